//! A `redis-server` of a test's own (Debian's package; `.ci/run` installs
//! it), on a free loopback port, without persistence, ended by its PID when
//! dropped. Self-contained: the kit's tests of `complete::shared_state`
//! include this file too (`#[path]`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    port: u16,
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
        let mut server = RedisServer {
            child: spawn(port)?,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        server.until_accepting()?;
        Ok(server)
    }

    /// Kills it (SIGKILL: no goodbye to its clients), and starts a new one
    /// on the same port, empty.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.child = spawn(self.port)?;
        self.until_accepting()
    }

    /// Kills it; [`RedisServer::restart`] brings one back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Connects to it and sends one command inline (`HGET key field`):
    /// its answer, as Redis wrote it.
    pub fn ask(&self, command: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|err| format!("connecting to redis-server: {err}"))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        tcp.write_all(format!("{command}\r\n").as_bytes())
            .map_err(|err| format!("asking redis-server: {err}"))?;
        let mut answer = [0u8; 512];
        // A signal (a child of the test process ending) may interrupt the
        // read before anything came: read again, a few times at most.
        let mut read = tcp.read(&mut answer);
        for _ in 0..10 {
            match &read {
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {
                    read = tcp.read(&mut answer);
                }
                _ => break,
            }
        }
        let read = read.map_err(|err| format!("reading redis-server's answer: {err}"))?;
        Ok(String::from_utf8_lossy(&answer[..read]).into_owned())
    }

    /// Bounded: 10 s, a connection attempt every 20 ms.
    fn until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not accept connections within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn spawn(port: u16) -> Result<Child, String> {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|err| format!("starting redis-server ({err}): apt install redis-server"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
