//! kubectl against a server: the one wrapper tests and the lab use to run it, optionally inside
//! a network namespace (the lab's server listens on a namespaced address).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// kubectl pointed at one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    netns: Option<String>,
}

/// What one kubectl run gave.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Whether kubectl exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Kubectl {
    /// kubectl using `kubeconfig`.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig: kubeconfig.into(),
            netns: None,
        }
    }

    /// Runs kubectl inside network namespace `ns` (`ip netns exec`).
    #[must_use]
    pub fn in_netns(mut self, ns: impl Into<String>) -> Self {
        self.netns = Some(ns.into());
        self
    }

    /// Runs `kubectl args…`, feeding `stdin` if given, whatever its exit status.
    ///
    /// # Errors
    /// When kubectl (or `ip`) cannot be started, saying how to install it.
    pub fn output(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<KubectlOutput> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kubectl"]);
                c
            }
            None => Command::new("kubectl"),
        };
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot run kubectl ({e}): install it (apt-get install kubernetes-client)"
            )
        })?;
        if let Some(input) = stdin
            && let Some(mut pipe) = child.stdin.take()
        {
            pipe.write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `kubectl args…` and returns its standard output.
    ///
    /// # Errors
    /// When kubectl cannot run or exits non-zero (with its standard error).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.output(args, stdin)?;
        if !out.success {
            anyhow::bail!("kubectl {} failed: {}", args.join(" "), out.stderr.trim());
        }
        Ok(out.stdout)
    }
}
