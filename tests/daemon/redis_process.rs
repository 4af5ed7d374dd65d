//! A `redis-server` of a test's own on 127.0.0.1 and a free port, nothing saved to disk;
//! stopped (and startable again on the same port) by the test, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_tcp_port, kill, wait_until};

pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
}

impl RedisProcess {
    pub fn start() -> RedisProcess {
        let mut r = RedisProcess {
            child: None,
            port: free_tcp_port(),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port; waits (bounded) until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "redis-server did not listen on {port}");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
