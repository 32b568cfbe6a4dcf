//! What a TLS connection holds on the heap (every byte, rustls' own included, counted by the
//! allocator): idle after a request, and stalled mid-handshake. The figures are printed for
//! docs/defences.md; the assertions are the bounds that the layer's invariants promise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use weir_core::tls::MAX_HANDSHAKE_BYTES;
use weir_core::{App, Connection, Now};

mod common;
use common::*;

/// Live heap bytes of the whole process (the tests here take `ONE_AT_A_TIME`).
static LIVE: AtomicI64 = AtomicI64::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only keeps a running sum of sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests share the process-wide count: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

fn tls_app() -> (Arc<App>, Arc<rustls::ClientConfig>) {
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
    let app = app(&[]);
    app.lifecycle().set_tls(Some(Arc::new(server)));
    (app, Arc::new(client))
}

/// Moves records both ways until neither side has more to say.
fn exchange(s: &mut Connection, c: &mut rustls::ClientConnection, now: Now) -> Vec<u8> {
    let mut plain = Vec::new();
    loop {
        let mut moved = false;
        while let Some(out) = s.poll_transmit() {
            let n = out.len();
            c.read_tls(&mut &out[..]).unwrap();
            c.process_new_packets().unwrap();
            s.advance_transmit(now, n);
            moved = true;
        }
        let mut sink = [0u8; 4096];
        while let Ok(n) = c.reader().read(&mut sink) {
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&sink[..n]);
        }
        let mut records = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut records).unwrap();
        }
        if !records.is_empty() {
            assert_eq!(s.feed(now, &records), records.len());
            moved = true;
        }
        while s.poll_effect().is_some() {}
        if !moved {
            return plain;
        }
    }
}

/// One idle TLS connection, after a request and then after `SHRINK_AFTER`: what stays on
/// the heap (busy, idle).
fn idle_connection_bytes(app: &Arc<App>, client: &Arc<rustls::ClientConfig>) -> (i64, i64) {
    let mut now = t0();
    let mut c =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
    let before = live();
    let mut s = app.connection(peer(), now);
    c.writer().write_all(get("/ping").as_bytes()).unwrap();
    let answer = exchange(&mut s, &mut c, now);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let busy = live() - before;
    now = now.advanced(Duration::from_secs(2));
    s.handle_timeout(now);
    let held = live() - before;
    drop(s);
    (busy, held)
}

#[test]
fn an_idle_tls_connection_releases_its_record_buffers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (app, client) = tls_app();
    idle_connection_bytes(&app, &client); // warm: lazily built tables, caches
    let (busy, held) = idle_connection_bytes(&app, &client);
    eprintln!(
        "a TLS connection holds {busy} bytes right after a request, {held} once idle (rustls' state included)"
    );
    let mut now = t0();
    let mut c =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut s = app.connection(peer(), now);
    c.writer().write_all(get("/ping").as_bytes()).unwrap();
    exchange(&mut s, &mut c, now);
    assert!(s.heap_bytes() > 0, "busy: buffers in use");
    now = now.advanced(Duration::from_secs(2));
    s.handle_timeout(now);
    assert_eq!(
        s.heap_bytes(),
        0,
        "idle: the session's and the records' buffers released"
    );
    // The rest is rustls' (its 4 KiB read buffer, keys, state): bounded.
    assert!(held < 16 * 1024 && held < busy, "{held} (busy: {busy})");
}

#[test]
fn a_stalled_handshake_holds_at_most_the_handshake_cap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (app, _) = tls_app();
    let now = t0();
    // A ClientHello announced as 65,000 bytes, sent in full records, never finished.
    let mut hello = vec![1u8];
    hello.extend_from_slice(&65_000u32.to_be_bytes()[1..]);
    hello.extend_from_slice(&[3, 3]);
    hello.resize(65_000 - 100, 0);
    let records: Vec<Vec<u8>> = hello
        .chunks(16_384)
        .map(|chunk| {
            let mut record = vec![0x16, 3, 1];
            record.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            record.extend_from_slice(chunk);
            record
        })
        .collect();
    let before = live();
    let mut s = app.connection(peer(), now);
    let mut peak = 0;
    let mut closed = false;
    for record in &records {
        s.feed(now, record);
        peak = peak.max(live() - before);
        while let Some(e) = s.poll_effect() {
            closed |= matches!(e, weir_core::Effect::Close(_));
        }
        if closed {
            break;
        }
    }
    eprintln!("a stalled 65,000-byte ClientHello: peak {peak} bytes, closed: {closed}");
    assert!(closed, "a handshake past MAX_HANDSHAKE_BYTES is closed");
    assert!(
        peak < (MAX_HANDSHAKE_BYTES + 12 * 1024) as i64,
        "peak {peak} bytes while handshaking"
    );
}
