//! TLS files: reads the PEM certificate chain and key named by `TLS_CERT` / `TLS_KEY`, checks
//! them, and builds the rustls configuration the core's TLS layer serves with (TLS 1.3 and 1.2,
//! ALPN `http/1.1`, the `ring` crypto provider). At start a problem exits 2 before binding; on
//! `SIGHUP` a new pair replaces the old for new handshakes, and a bad new pair is logged and the
//! old one kept.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use weir_core::config::TlsFiles;

/// The rustls configuration for `files`, or what is wrong, naming the file; ALPN offers `h2`
/// before `http/1.1` with `http2`.
pub fn load(files: &TlsFiles, http2: bool) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("TLS_CERT {}: {}", files.cert, pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS_CERT {}: {}", files.cert, pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS_CERT {}: no certificate in the file (expected PEM `BEGIN CERTIFICATE` blocks)",
            files.cert
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS_KEY {}: {}", files.key, pem_error(&e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS_KEY {} does not go with TLS_CERT {}: {e}",
                files.key, files.cert
            )
        })?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read it ({io})"),
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        Error::MissingSectionEnd { end_marker } => {
            let label = printable(end_marker);
            format!("not valid PEM: a `{label}` section has no `-----END {label}-----` line")
        }
        Error::IllegalSectionStart { line } => format!(
            "not valid PEM: a malformed `-----BEGIN` line: `{}`",
            printable(line)
        ),
        Error::Base64Decode(why) => format!("not valid PEM: bad base64 inside a section ({why})"),
        Error::SectionTooLarge => "not valid PEM: a section is larger than 256 MB".to_owned(),
        other => format!("not valid PEM ({other})"),
    }
}

/// A line of the file as text for an error: at most 80 characters, control bytes escaped.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().take(80).collect();
    text.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, cert: &str, key: &str) -> TlsFiles {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        TlsFiles {
            cert: c.display().to_string(),
            key: k.display().to_string(),
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_matching_pair_loads_with_alpn_http11() {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = scratch("ok");
        let f = files(&dir, &pair.cert.pem(), &pair.signing_key.serialize_pem());
        let config = load(&f, false).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let config = load(&f, true).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn problems_name_the_file_and_the_problem() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let dir = scratch("bad");
        let mismatched = files(&dir, &a.cert.pem(), &b.signing_key.serialize_pem());
        let e = load(&mismatched, false).unwrap_err();
        assert!(
            e.contains("does not go with") && e.contains("key.pem"),
            "{e}"
        );
        let no_cert = files(&dir, "hello", &a.signing_key.serialize_pem());
        let e = load(&no_cert, false).unwrap_err();
        assert!(e.starts_with("TLS_CERT") && e.contains("cert.pem"), "{e}");
        let missing = TlsFiles {
            cert: dir.join("absent.pem").display().to_string(),
            key: dir.join("key.pem").display().to_string(),
        };
        let e = load(&missing, false).unwrap_err();
        assert!(e.contains("absent.pem") && e.contains("cannot read"), "{e}");
        // PEM errors in words, never byte arrays.
        let broken = files(
            &dir,
            "-----BEGIN CERTIFICATE\nAAAA\n",
            &a.signing_key.serialize_pem(),
        );
        let e = load(&broken, false).unwrap_err();
        assert!(
            e.contains("malformed `-----BEGIN` line") && !e.contains("[45"),
            "{e}"
        );
        let unended = files(
            &dir,
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
            &a.signing_key.serialize_pem(),
        );
        let e = load(&unended, false).unwrap_err();
        assert!(
            e.contains("-----END CERTIFICATE-----") && !e.contains("[45"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
