//! The Nomad API client against the Nomad API double, for tests/nomad_client_*.rs: settings
//! with short timeouts and quick retries, a client with them, and a simulated cluster to serve.
//! (The double checks every exchange against `../shared/nomad-api` and fails a test when one
//! does not conform.)

use std::time::Duration;

use cluster_deploy::nomad::settings::parse_address;
use cluster_deploy::nomad::{NomadClient, NomadSettings};
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{JobSpec, SimConfig, Simulation};
use support::retry::Policy;

pub fn quick(what: &'static str) -> Policy {
    Policy {
        what,
        max_attempts: 3,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        deadline: Some(Duration::from_secs(10)),
    }
}

pub fn settings(url: &str) -> NomadSettings {
    let mut s = NomadSettings::new(parse_address(url, "test").unwrap());
    s.timeouts.connect = Duration::from_secs(2);
    s.timeouts.request = Duration::from_secs(10);
    s.timeouts.read_retries = quick("Nomad API read");
    s.timeouts.write_retries = quick("Nomad API write");
    s
}

pub fn client(nomad: &NomadApiDouble) -> NomadClient {
    NomadClient::with_settings(settings(nomad.url())).unwrap()
}

/// Three servers (s0 leads), three ready clients, a service job of 6 and a system job.
pub fn cluster() -> (Simulation, NomadApiDouble) {
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1", "c2"]);
    sim.add_job(JobSpec::service("web", 6));
    sim.add_job(JobSpec::system("logs"));
    sim.advance(Duration::from_secs(5));
    let nomad = NomadApiDouble::serve(&sim);
    (sim, nomad)
}

pub fn paths(nomad: &NomadApiDouble, path: &str) -> usize {
    nomad.requests().iter().filter(|r| r.path == path).count()
}
