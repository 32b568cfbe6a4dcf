//! What the fuzz targets that run a whole application share.

use std::sync::Arc;

use weir_core::{App, Config, Instant, Now};

/// The application under fuzzing: fast jobs, no rate limit, no access log, a worker counted
/// as started so `/health` answers 200; `env` adds or overrides settings.
pub fn build_app(env: &[(&str, &str)]) -> Arc<App> {
    let mut all = vec![("ACCESS_LOG", "false"), ("RATE_LIMIT", "0"), ("JOB_COST", "10"), ("QUEUE_SIZE", "4")];
    all.extend_from_slice(env);
    let config = Config::from_sources(all, 1).expect("valid fuzz config");
    let app = App::builder(config).build(Now::new(Instant::from_nanos(1), 1_700_000_000_000));
    app.lifecycle().worker_started();
    app
}
