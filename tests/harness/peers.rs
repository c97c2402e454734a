//! Reference peers for the protocol tests: Python servers from tests/peers/ run in the venv that
//! tests/peers/setup-venv.sh creates. Without it (or without a needed package) the tests skip and
//! say so; `.ci/run` creates it and sets AHE_PEERS_PYTHON.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent_health_exporter::config::AgentSpec;

/// The venv's python, when it exists and can import `modules`; else prints why the test skips.
pub fn python(test: &str, modules: &str) -> Option<PathBuf> {
    venv_python("AHE_PEERS_PYTHON", "peers-venv", test, modules)
}

/// The second venv's python (the MCP SDK 2.x, which cannot share a venv with the 1.x the
/// legacy tests pin), as `python` does it: AHE_PEERS_PYTHON_MCP2 or target/peers-venv-mcp2.
pub fn python_mcp2(test: &str, modules: &str) -> Option<PathBuf> {
    venv_python("AHE_PEERS_PYTHON_MCP2", "peers-venv-mcp2", test, modules)
}

/// The third venv's python (a2a-sdk 0.3.x, which cannot share a venv with the 1.x of the
/// first): AHE_PEERS_PYTHON_A2A03 or target/peers-venv-a2a03.
pub fn python_a2a03(test: &str, modules: &str) -> Option<PathBuf> {
    venv_python("AHE_PEERS_PYTHON_A2A03", "peers-venv-a2a03", test, modules)
}

/// The venv of LiteLLM's proxy (tests/peers/setup-litellm.sh), the OpenAI-compatible server of
/// the canary tests: AHE_LITELLM_PYTHON or target/litellm-venv. Checked by the small package
/// its `proxy` extra installs: importing LiteLLM itself takes half a minute on a busy machine.
pub fn python_litellm(test: &str) -> Option<PathBuf> {
    venv_python(
        "AHE_LITELLM_PYTHON",
        "litellm-venv",
        test,
        "litellm_proxy_extras",
    )
}

fn venv_python(variable: &str, venv: &str, test: &str, modules: &str) -> Option<PathBuf> {
    let default = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(venv)
        .join("bin/python");
    let python = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(default);
    let imports = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(imports, Ok(s) if s.success()) {
        return Some(python);
    }
    let message = format!(
        "SKIPPED {test}: no Python with {modules} at {} \
         (run tests/peers/setup-venv.sh or setup-litellm.sh, or set {variable})",
        python.display()
    );
    eprintln!("{message}");
    println!("{message}");
    None
}

/// A running peer: started with `args`, ready once it printed `ready PORT`; killed on drop.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
}

impl Peer {
    pub fn start(python: &Path, script: &str, args: &[&str]) -> Peer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(script);
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("peer's first line");
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
        Peer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// Sends one command line and waits for the peer's answer line.
    pub fn command(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one agent of a config text, resolved as the exporter would.
pub fn agent(yaml: &str, dir: &Path) -> Arc<AgentSpec> {
    let config = agent_health_exporter::config::parse(yaml, "test.yaml", dir)
        .unwrap_or_else(|e| panic!("config does not load: {e}\n{yaml}"));
    config.agents[0].spec.clone()
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, written
/// as PEM files into `dir`: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
pub fn write_certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "peers test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [
        (
            "server",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ),
        ("client", vec!["probe.client".to_owned()]),
    ] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        if name == "client" {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        } else {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        }
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

/// Waits a little for a peer that was just told to change.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}
