//! Development logging (compact text): no allocation per logged request.
mod common;

#[test]
fn text_access_lines_allocate_nothing_per_request() {
    common::access_log::assert_no_allocation_per_logged_request("development");
}
