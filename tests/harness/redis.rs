//! A `redis-server` of a test's own (Debian's package; `.ci/run` installs
//! it), on a free loopback port, without persistence, ended by its PID when
//! dropped. Self-contained: the kit's tests of `complete::shared_state`
//! include this file too (`#[path]`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
}

impl RedisServer {
    /// Starts one and waits (10 s at most) until it accepts connections.
    pub fn start() -> Result<RedisServer, String> {
        // A port the kernel just gave us, handed to redis-server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map_err(|err| format!("finding a free port for redis-server: {err}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|err| format!("starting redis-server ({err}): apt install redis-server"))?;
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        // Bounded: 10 s, a connection attempt every 20 ms.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not accept connections within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
