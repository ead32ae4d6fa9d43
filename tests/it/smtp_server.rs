//! A real SMTP server on loopback for the email tests: the `mailin` crate speaks the protocol
//! (EHLO, AUTH PLAIN, MAIL, RCPT, DATA with dot-unstuffing), this file only moves lines between
//! a socket and a session and keeps what arrived. No TLS: `?tls=none` on the client side.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin::response::{self, Response};
use mailin::{Action, AuthMechanism, Handler, SessionBuilder};

/// One message as the server received it: the envelope and the raw DATA bytes.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<ReceivedMail>>,
    connections: AtomicUsize,
    /// The reply to every RCPT TO, when set (a rejection or a deferral).
    rcpt_reply: Mutex<Option<(u16, String)>>,
    /// User name and password every AUTH PLAIN must carry, when set.
    credentials: Option<(String, String)>,
    logins: Mutex<Vec<(String, String)>>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl SmtpServer {
    /// Accepts any sender and recipient, without authentication.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Requires AUTH PLAIN with these credentials (offered without TLS: loopback only).
    pub fn start_with_login(username: &str, password: &str) -> Self {
        Self::start_inner(Some((username.to_owned(), password.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP server");
        let addr = listener.local_addr().expect("SMTP address");
        let mut builder = SessionBuilder::new("smtp.hookflow.test");
        if credentials.is_some() {
            builder.enable_auth(AuthMechanism::Plain);
            builder.insecure_enable_plaintext_auth();
        }
        let state = Arc::new(State {
            credentials,
            ..State::default()
        });
        let shared = Arc::clone(&state);
        // Threads end with the test process; a test's server is never stopped early.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let builder = builder.clone();
                let state = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &builder, state);
                });
            }
        });
        Self { addr, state }
    }

    /// `smtp://127.0.0.1:<port>?tls=none`.
    pub fn url(&self) -> String {
        format!("smtp://{}?tls=none", self.addr)
    }

    /// Answer every RCPT TO with this code and text from now on.
    pub fn reply_to_recipients(&self, code: u16, text: &str) {
        *self.state.rcpt_reply.lock().expect("lock") = Some((code, text.to_owned()));
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state.messages.lock().expect("lock").clone()
    }

    /// How many TCP connections clients opened.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The user names and passwords of successful logins.
    pub fn logins(&self) -> Vec<(String, String)> {
        self.state.logins.lock().expect("lock").clone()
    }

    /// Wait until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server got {} of {n} messages",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    builder: &SessionBuilder,
    state: Arc<State>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let remote = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let handler = Session {
        state,
        current: None,
    };
    let mut session = builder.build(remote, handler);
    session.greeting().write_to(&mut writer)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let reply = session.process(&line);
        match reply.action {
            Action::Reply => reply.write_to(&mut writer)?,
            Action::Close => {
                reply.write_to(&mut writer)?;
                return Ok(());
            }
            Action::NoReply => {}
            Action::UpgradeTls => return Ok(()),
        }
        writer.flush()?;
    }
}

/// The per-connection handler: collects one message at a time.
struct Session {
    state: Arc<State>,
    current: Option<ReceivedMail>,
}

impl Handler for Session {
    fn rcpt(&mut self, _to: &str) -> Response {
        match self.state.rcpt_reply.lock().expect("lock").clone() {
            Some((code, text)) => Response::custom(code, text),
            None => response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(ReceivedMail {
            mail_from: from.to_owned(),
            recipients: to.to_vec(),
            data: Vec::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(mail) = self.current.as_mut() {
            mail.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(mail) = self.current.take() {
            self.state.messages.lock().expect("lock").push(mail);
        }
        response::OK
    }

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        authentication_id: &str,
        password: &str,
    ) -> Response {
        let given = (authentication_id.to_owned(), password.to_owned());
        if self.state.credentials.as_ref() == Some(&given) {
            self.state.logins.lock().expect("lock").push(given);
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}
