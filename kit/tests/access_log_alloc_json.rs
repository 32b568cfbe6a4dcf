//! Production logging (JSON lines): no allocation per logged request.
mod common;

#[test]
fn json_access_lines_allocate_nothing_per_request() {
    common::access_log::assert_no_allocation_per_logged_request("production");
}
