//! Arbitrary bytes through the TLS layer into a session: no panic, no hang, bounded memory.
//!
//! The first byte picks the mode. Raw: the rest goes in as ciphertext (garbage, truncated or
//! replayed records). Client: an in-memory rustls client completes a real handshake and sends
//! the rest as plaintext requests, in chunks the input chooses, sometimes with one ciphertext
//! byte flipped in flight, sometimes with time moving or the peer closing.
#![no_main]

#[path = "shared.rs"]
mod shared;

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use weir_core::{App, Connection, Effect, Instant, Now};

struct Fixture {
    app: Arc<App>,
    client: Arc<rustls::ClientConfig>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pair.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pair.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let app = shared::build_app(&[("MAX_HEADER_BYTES", "2048"), ("MAX_BODY_BYTES", "8192")]);
        app.lifecycle().set_tls(Some(Arc::new(server)));
        Fixture { app, client: Arc::new(client) }
    })
}

/// Moves the server's records to the client (if any), and reports whether the server closed.
fn drain(s: &mut Connection, now: Now, client: Option<&mut rustls::ClientConnection>) -> bool {
    let mut client = client;
    while let Some(out) = s.poll_transmit() {
        let n = out.len();
        if let Some(c) = client.as_deref_mut() {
            let _ = c.read_tls(&mut &out[..]);
            let _ = c.process_new_packets();
            let mut sink = [0u8; 4096];
            while matches!(c.reader().read(&mut sink), Ok(n) if n > 0) {}
        }
        s.advance_transmit(now, n);
    }
    while let Some(e) = s.poll_effect() {
        if let Effect::Close(_) = e {
            return true;
        }
    }
    assert!(s.heap_bytes() < 1 << 20, "connection holds {} bytes", s.heap_bytes());
    false
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, data)) = data.split_first() else { return };
    let mut now = Now::new(Instant::from_nanos(1_000_000), 1_700_000_000_000);
    let mut s = f.app.connection("127.0.0.1:1".parse().unwrap(), now);
    if mode & 1 == 0 {
        for chunk in data.chunks(usize::from(mode >> 1) + 1) {
            let _ = s.feed(now, chunk);
            now = now.advanced(Duration::from_millis(3));
            s.handle_timeout(now);
            if drain(&mut s, now, None) {
                return;
            }
        }
        s.handle_eof(now);
        let _ = drain(&mut s, now, None);
        return;
    }
    let mut c = rustls::ClientConnection::new(f.client.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut i = 0;
    let mut steps = 0;
    while steps < 2_000 {
        steps += 1;
        // Client records to the server, perhaps with one byte flipped.
        let mut wire = Vec::new();
        while c.wants_write() {
            let _ = c.write_tls(&mut wire);
        }
        if let (Some(&ctl), false) = (data.get(i), wire.is_empty()) {
            if ctl == 0xff {
                let at = usize::from(data.get(i + 1).copied().unwrap_or(0)) % wire.len();
                wire[at] ^= 0x5a;
            }
        }
        if !wire.is_empty() && s.feed(now, &wire) < wire.len() {
            // The server is not reading (back-pressure): what it did not take is dropped.
        }
        if drain(&mut s, now, Some(&mut c)) {
            return;
        }
        let Some(&ctl) = data.get(i) else { break };
        i += 1;
        match ctl & 3 {
            0 | 1 if !c.is_handshaking() => {
                let end = (i + usize::from(ctl >> 2) + 1).min(data.len());
                let _ = c.writer().write_all(&data[i..end]);
                i = end;
            }
            2 => {
                now = now.advanced(Duration::from_millis(u64::from(ctl >> 2) * 97 + 1));
                s.handle_timeout(now);
            }
            3 if ctl >> 2 == 0 => {
                c.send_close_notify();
            }
            3 if ctl >> 2 == 1 => {
                s.handle_eof(now);
            }
            _ => {}
        }
        while let Some(job) = f.app.queue().take() {
            if let Some((n, cost)) = job.start(now.mono) {
                job.complete(now.mono, Some(weir_core::jobs::intensive_work(n, cost)));
            }
        }
        s.handle_wake(now);
    }
    let _ = drain(&mut s, now, Some(&mut c));
});
