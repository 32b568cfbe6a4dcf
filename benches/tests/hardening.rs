//! The third hardening pass, from outside, against every runtime: fair limits, deadlines kept
//! whatever arrives, bounded memory per connection, refusals that say what they are.

mod common;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;

/// A client refused by its per-IP limit spends nothing of the global limit: a second client
/// is served from its first request.
fn a_noisy_client_does_not_starve_the_others(rt: &'static str) {
    let srv = Server::start(rt, &[("RATE_LIMIT", "20"), ("RATE_LIMIT_PER_IP", "5")]);
    let ask = |c: &mut Conn| {
        c.write_all(get("/ping").as_bytes()).unwrap();
        read_response(c, false).unwrap().status
    };
    let mut noisy = srv.connect_from(IpAddr::from([127, 0, 0, 1]));
    let statuses: Vec<u16> = (0..40).map(|_| ask(&mut noisy)).collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!((5..=6).contains(&ok), "{rt}: {statuses:?}");
    let mut quiet = srv.connect_from(IpAddr::from([127, 0, 0, 2]));
    let statuses: Vec<u16> = (0..5).map(|_| ask(&mut quiet)).collect();
    assert_eq!(statuses, [200; 5], "{rt}: the second client's first five");
}

for_each_runtime! {
    a_noisy_client_does_not_starve_the_others => super::a_noisy_client_does_not_starve_the_others;
}
