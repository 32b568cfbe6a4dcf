//! The deployment files say what weir does: weir-tokio started with the environment of
//! `deploy/k8s/deployment.yaml` answers every probe path and the scrape path named there, on
//! the port named there, and the grace period outlasts the shutdown delay plus the drain.

mod common;

use common::Server;

fn manifest() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/deployment.yaml");
    std::fs::read_to_string(path).expect("deploy/k8s/deployment.yaml")
}

/// `key: value` values of every line with that key (quotes removed).
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
        .filter_map(|rest| rest.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect()
}

/// The container's environment: each `- name: X` followed by `value: "Y"`.
fn env(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_prefix("- name:")?.trim();
            let value = w[1].strip_prefix("value:")?.trim().trim_matches('"');
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s')
        .parse()
        .expect("a duration in seconds")
}

#[test]
fn the_manifests_probe_paths_and_ports_answer() {
    let text = manifest();
    let env = env(&text);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let server_port = get("SERVER_PORT").expect("SERVER_PORT in the manifest");
    let port = server_port.rsplit(':').next().unwrap().to_owned();
    assert_eq!(values(&text, "containerPort"), vec![port.clone()]);
    assert_eq!(values(&text, "prometheus.io/port"), vec![port]);
    let grace = seconds(&values(&text, "terminationGracePeriodSeconds")[0]);
    let (delay, drain) = (
        seconds(&get("SHUTDOWN_DELAY").unwrap()),
        seconds(&get("SHUTDOWN_TIMEOUT").unwrap()),
    );
    assert!(grace > delay + drain, "grace {grace} s ≤ {delay} + {drain}");
    // The manifest's settings, listening on a free loopback port instead of 0.0.0.0:8080.
    let mut settings: Vec<(&str, &str)> = env
        .iter()
        .filter(|(n, _)| n != "SERVER_PORT")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    settings.push(("SERVER_PORT", "127.0.0.1:0"));
    let srv = Server::start("tokio", &settings);
    let paths = values(&text, "path");
    assert!(paths.contains(&"/livez".to_owned()) && paths.contains(&"/readyz".to_owned()));
    for path in &paths {
        assert_eq!(srv.get(path).status, 200, "{path} as the manifest expects");
    }
    let scrape = srv.request(&format!(
        "GET {} HTTP/1.1\r\nHost: t\r\nAccept: text/plain;version=0.0.4\r\n\r\n",
        values(&text, "prometheus.io/path")[0]
    ));
    assert!(
        scrape
            .text()
            .contains("# TYPE http_server_request_duration_seconds histogram")
    );
}

#[test]
fn the_compose_fleets_settings_are_a_valid_configuration() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/compose/docker-compose.yml"
    );
    let text = std::fs::read_to_string(path).expect("deploy/compose/docker-compose.yml");
    let block: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| l.trim() != "environment:")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| !l.trim().starts_with('#'))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    let names: Vec<&str> = block.iter().map(|(k, _)| k.as_str()).collect();
    for needed in [
        "REDIS_URL",
        "CLUSTER_NAME",
        "CLUSTER_SIZE",
        "RATE_LIMIT",
        "SHUTDOWN_DELAY",
    ] {
        assert!(
            names.contains(&needed),
            "{needed} in the compose file: {names:?}"
        );
    }
    // Every setting is accepted as written (Redis itself is not reachable here: the fallback
    // share serves, which is what an instance does before Redis is up).
    let env: Vec<(&str, &str)> = block
        .iter()
        .filter(|(k, _)| k != "REDIS_URL")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("REDIS_URL", "redis://127.0.0.1:1/0")])
        .collect();
    let srv = Server::start("tokio", &env);
    let ready = srv.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["rate_limit"], "local-fallback");
    // Only the load balancer is trusted: a client reaching weir directly cannot pick its own
    // per-IP key with a forged X-Forwarded-For.
    let trusted = &block
        .iter()
        .find(|(k, _)| k == "TRUSTED_PROXIES")
        .unwrap()
        .1;
    assert!(!trusted.ends_with("/0"), "TRUSTED_PROXIES={trusted}");
    let lb = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ipv4_address: "))
        .expect("the load balancer has a fixed address");
    assert_eq!(
        trusted,
        &format!("{lb}/32"),
        "the load balancer's address only"
    );
}

/// A trusted range that covers every address is accepted (it may be what a setup behind a
/// private network wants) but warned about at start.
#[test]
fn trusting_every_address_is_warned_about() {
    let log = std::env::temp_dir().join(format!("weir-trust-all-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let srv = Server::start_with(
        "tokio",
        &[
            ("TRUST_PROXY", "true"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0"),
        ],
        file.into(),
    );
    assert_eq!(srv.get("/ping").status, 200);
    let warned = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("TRUSTED_PROXIES covers every address")
    };
    assert!(common::retry(warned), "the start warns");
    let _ = std::fs::remove_file(&log);
}

/// `--health-check` probes the server its configuration describes (the container's health
/// check needs no shell or curl): 0 while it serves, 1 when nothing answers.
#[test]
fn the_binary_checks_its_own_health() {
    let srv = Server::start("tokio", &[]);
    let check = |port: String| {
        std::process::Command::new(common::binary("tokio"))
            .arg("--health-check")
            .env_clear()
            .env("SERVER_PORT", port)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(format!("0.0.0.0:{}", srv.addr.port())), Some(0));
    assert_eq!(check(format!("127.0.0.1:{}", common::free_port())), Some(1));
}
