//! Your own service on weir: two routes, served by weir-tokio's connection loop with the
//! runtime kit, then called by a plain client. `cargo run -p weir-tokio --example own_service`

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]
use std::io::{Read, Write};
use std::sync::Arc;

use weir_core::Now;
use weir_core::http::{Head, HttpConfig, Reply, Response, Service, Status};

/// What this service waits on to answer later: nothing, it always answers at once.
type Never = std::future::Pending<()>;

/// `GET /hello/:name` greets, `POST /count` counts the body's characters, the rest is 404.
struct Greeter(HttpConfig);

impl Service for Greeter {
    type Exchange = ();
    type Wait = Never;

    fn http_config(&self) -> &HttpConfig {
        &self.0
    }

    fn call(&self, _: Now, r: &Head<'_>, b: &[u8], _: &mut (), res: &mut Response) -> Reply<Never> {
        res.header("Content-Type", b"text/plain; charset=utf-8");
        let chars = String::from_utf8_lossy(b).chars().count();
        let text = match (r.method.as_str(), r.path()) {
            ("GET", path) if path.starts_with(b"/hello/") => {
                format!("hello, {}\n", String::from_utf8_lossy(&path[7..]))
            }
            ("POST", b"/count") => format!("{chars} characters\n"),
            _ => (res.set_status(Status::NOT_FOUND), String::new()).1,
        };
        res.body_mut().extend_from_slice(text.as_bytes());
        Reply::Now
    }
}

fn main() -> std::io::Result<()> {
    let listener = weir_kit::net::bind("127.0.0.1:0".parse().expect("an address"), 128, false)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let service = Arc::new(Greeter(HttpConfig::default()));
    let drain = Arc::new(weir_kit::serve::Drain::default());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        rt.expect("a runtime")
            .block_on(weir_tokio::serve(service, listener, drain, ()))
    });
    let mut client = std::net::TcpStream::connect(addr)?;
    client.write_all(b"GET /hello/weir HTTP/1.1\r\nHost: x\r\n\r\n")?;
    client.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nConnection: close\r\n\r\nh\xc3\xa9llo")?;
    let mut answers = String::new();
    client.read_to_string(&mut answers)?;
    print!("{answers}");
    assert!(answers.contains("hello, weir\n") && answers.ends_with("5 characters\n"));
    Ok(())
}
