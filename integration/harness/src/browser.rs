//! A real headless Chromium for tests, driven over W3C WebDriver
//! (JSON over HTTP, through http-kit's client) by `chromedriver`.
//!
//! [`Browser::start`] runs `chromedriver` on a free 127.0.0.1 port, in a
//! process group of its own, and opens a session: Chromium with a fresh
//! profile in a temporary folder. Chromium reaches nothing but 127.0.0.1:
//! every other host name resolves to nothing (`--host-resolver-rules`),
//! and the services that phone home (component and extension updates,
//! sign-in, network time, crash reports, search preconnects) are off.
//! Dropping the [`Browser`] ends the session, kills the process group by
//! its id (chromedriver's PID: chromedriver, Chromium and its helpers)
//! and removes the folder.
//!
//! ```no_run
//! # fn main() -> Result<(), baton_harness::BrowserError> {
//! use std::time::Duration;
//! let browser = baton_harness::Browser::start()?;
//! browser.goto("http://127.0.0.1:8080/authorize?...")?;
//! browser.fill("#username", "alice")?;
//! browser.fill("#password", "password-alice")?;
//! browser.click("#login")?;
//! let url = browser.wait_for_url(|url| url.contains("code="), Duration::from_secs(10))?;
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

use core::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_kit::ClientRequest;
use serde_json::{Map, Value, json};

use crate::paths::{chromedriver_binary, chromium_binary, temp_dir};

/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds connecting to chromedriver and each read of its answer; a
/// session start or a page load can take this long on a loaded machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// Page loads and scripts give up after this (WebDriver session timeouts).
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the `wait_for_*` helpers look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts at a free port for chromedriver (another process may take the
/// port between our probe and chromedriver's bind).
const PORT_ATTEMPTS: u32 = 5;
/// What chromedriver logs when its port was taken.
const PORT_TAKEN: &str = "port not available";
/// How long ending the session may take when the browser is dropped.
const END_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Every host name but 127.0.0.1 resolves to nothing, so whatever
/// Chromium tries, it cannot leave the machine (nor send a DNS query).
const LOOPBACK_ONLY: &str = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1";

/// Chromium's command line besides the profile folder.
const CHROMIUM_ARGS: [&str; 17] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-features=NetworkTimeServiceQuerying,PreconnectToSearch,OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--window-size=1280,800",
    LOOPBACK_ONLY,
];

/// Which programs to run, and extra Chromium flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOptions {
    /// The Chromium binary (default `/usr/bin/chromium`, or `$BATON_CHROMIUM`).
    pub chromium: PathBuf,
    /// The chromedriver binary (default `/usr/bin/chromedriver`, or `$BATON_CHROMEDRIVER`).
    pub chromedriver: PathBuf,
    /// Flags added after the harness's own (e.g. `--log-net-log=FILE`).
    pub extra_args: Vec<String>,
}

impl BrowserOptions {
    /// The binaries from the environment (see the fields), no extra flags.
    pub fn from_env() -> Self {
        BrowserOptions {
            chromium: chromium_binary(),
            chromedriver: chromedriver_binary(),
            extra_args: Vec::new(),
        }
    }

    /// Adds a Chromium flag.
    #[must_use]
    pub fn with_arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
}

/// Why the browser could not start or do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrowserError {
    /// A program is not where it should be.
    NotInstalled {
        /// `chromium` or `chromedriver`.
        program: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides `path`.
        env: &'static str,
    },
    /// chromedriver did not start, or not answer as ready.
    DriverStart {
        /// What went wrong, with the end of chromedriver's log.
        detail: String,
    },
    /// chromedriver could not be reached, or its answer not read.
    Transport {
        /// The WebDriver command, e.g. `POST /session/{id}/url`.
        command: String,
        /// The I/O error.
        detail: String,
    },
    /// WebDriver answered with an error.
    WebDriver {
        /// The WebDriver command.
        command: String,
        /// The W3C error code, e.g. `no such element`.
        error: String,
        /// chromedriver's message.
        message: String,
    },
    /// The answer was not shaped as the protocol says.
    Protocol {
        /// The WebDriver command.
        command: String,
        /// What was missing or wrong, with the answer.
        detail: String,
    },
    /// A `wait_for_*` helper ran out of time.
    Timeout {
        /// What was waited for.
        waited_for: String,
        /// What was seen last (a URL, an error).
        last_seen: String,
    },
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrowserError::NotInstalled { program, path, env } => write!(
                f,
                "no {program} at {} (install chromium and chromium-driver: make setup; or set {env})",
                path.display()
            ),
            BrowserError::DriverStart { detail } => write!(f, "chromedriver did not start: {detail}"),
            BrowserError::Transport { command, detail } => write!(f, "{command}: {detail}"),
            BrowserError::WebDriver { command, error, message } => write!(f, "{command}: {error}: {message}"),
            BrowserError::Protocol { command, detail } => write!(f, "{command}: unexpected answer: {detail}"),
            BrowserError::Timeout { waited_for, last_seen } => {
                write!(f, "timed out waiting for {waited_for} (last seen: {last_seen})")
            }
        }
    }
}

impl core::error::Error for BrowserError {}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level cross-site navigations with a safe method.
    Lax,
    /// Sent on every request (needs `Secure`).
    None,
}

impl SameSite {
    /// The attribute value (`Strict`, `Lax`, `None`).
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }

    fn parse(value: &str) -> Option<SameSite> {
        [SameSite::Strict, SameSite::Lax, SameSite::None].into_iter().find(|s| s.as_str() == value)
    }
}

/// A cookie as the browser stores it (WebDriver's cookie object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// The host it belongs to (cookies ignore ports); empty when adding
    /// means the current page's host.
    pub domain: String,
    /// Path.
    pub path: String,
    /// Out of reach of scripts.
    pub http_only: bool,
    /// Sent over HTTPS only.
    pub secure: bool,
    /// `None` when the browser reports no `SameSite`.
    pub same_site: Option<SameSite>,
    /// Expiry in seconds since the Unix epoch; `None` for a session cookie.
    pub expiry: Option<u64>,
}

impl Cookie {
    /// A session cookie for the current page's host, path `/`, no other attributes.
    pub fn new(name: &str, value: &str) -> Self {
        Cookie {
            name: name.to_string(),
            value: value.to_string(),
            domain: String::new(),
            path: "/".to_string(),
            http_only: false,
            secure: false,
            same_site: None,
            expiry: None,
        }
    }

    fn from_webdriver(value: &Value) -> Option<Cookie> {
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let flag = |name: &str| value.get(name).and_then(Value::as_bool).unwrap_or(false);
        Some(Cookie {
            name: text("name")?,
            value: text("value")?,
            domain: text("domain").unwrap_or_default(),
            path: text("path").unwrap_or_default(),
            http_only: flag("httpOnly"),
            secure: flag("secure"),
            same_site: value.get("sameSite").and_then(Value::as_str).and_then(SameSite::parse),
            expiry: value.get("expiry").and_then(Value::as_u64),
        })
    }

    fn to_webdriver(&self) -> Value {
        let mut cookie = Map::new();
        cookie.insert("name".into(), json!(self.name));
        cookie.insert("value".into(), json!(self.value));
        cookie.insert("path".into(), json!(self.path));
        cookie.insert("httpOnly".into(), json!(self.http_only));
        cookie.insert("secure".into(), json!(self.secure));
        if !self.domain.is_empty() {
            cookie.insert("domain".into(), json!(self.domain));
        }
        if let Some(same_site) = self.same_site {
            cookie.insert("sameSite".into(), json!(same_site.as_str()));
        }
        if let Some(expiry) = self.expiry {
            cookie.insert("expiry".into(), json!(expiry));
        }
        Value::Object(cookie)
    }
}

/// A headless Chromium with one WebDriver session. Dropping it ends the
/// session, kills chromedriver and Chromium by process group and removes
/// the profile.
#[derive(Debug)]
pub struct Browser {
    session_id: String,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and Chromium as [`BrowserOptions::from_env`] says.
    pub fn start() -> Result<Browser, BrowserError> {
        Self::start_with(&BrowserOptions::from_env())
    }

    /// Starts chromedriver and Chromium with `options`.
    pub fn start_with(options: &BrowserOptions) -> Result<Browser, BrowserError> {
        installed("chromium", &options.chromium, "BATON_CHROMIUM")?;
        installed("chromedriver", &options.chromedriver, "BATON_CHROMEDRIVER")?;
        let driver = Driver::start(&options.chromedriver)?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_string()).collect();
        args.push(format!("--user-data-dir={}", driver.dir.join("profile").display()));
        args.extend(options.extra_args.iter().cloned());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": millis(PAGE_LOAD_TIMEOUT), "script": millis(PAGE_LOAD_TIMEOUT)},
            "goog:chromeOptions": {"binary": options.chromium, "args": args},
        }}});
        let command = "POST /session";
        let created = driver.command("POST", "/session", Some(&capabilities), command)?;
        let session_id = created
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol(command, "no sessionId", &created))?
            .to_string();
        Ok(Browser { session_id, driver })
    }

    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, BrowserError> {
        let full_path = format!("/session/{}{path}", self.session_id);
        let command = format!("{method} /session/{{id}}{path}");
        self.driver.command(method, &full_path, body, &command)
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.session_command("POST", "/url", Some(&json!({"url": url}))).map(drop)
    }

    /// The URL of the page shown.
    pub fn current_url(&self) -> Result<String, BrowserError> {
        let value = self.session_command("GET", "/url", None)?;
        string(&value, "GET /session/{id}/url")
    }

    /// The page's HTML as the browser now has it (the DOM, serialized).
    pub fn page_source(&self) -> Result<String, BrowserError> {
        let value = self.session_command("GET", "/source", None)?;
        string(&value, "GET /session/{id}/source")
    }

    /// The visible text of the page's body.
    pub fn page_text(&self) -> Result<String, BrowserError> {
        self.text("body")
    }

    /// The visible text of the first element matching `css_selector`.
    pub fn text(&self, css_selector: &str) -> Result<String, BrowserError> {
        let element = self.element(css_selector)?;
        let value = self.session_command("GET", &format!("/element/{element}/text"), None)?;
        string(&value, "GET /session/{id}/element/{element}/text")
    }

    /// Whether an element matches `css_selector` now.
    pub fn exists(&self, css_selector: &str) -> Result<bool, BrowserError> {
        let found = self.session_command(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css_selector})),
        )?;
        Ok(found.as_array().is_some_and(|elements| !elements.is_empty()))
    }

    /// Empties the input matching `css_selector` and types `text` into it.
    pub fn fill(&self, css_selector: &str, text: &str) -> Result<(), BrowserError> {
        let element = self.element(css_selector)?;
        self.session_command("POST", &format!("/element/{element}/clear"), Some(&json!({})))?;
        self.session_command("POST", &format!("/element/{element}/value"), Some(&json!({"text": text})))
            .map(drop)
    }

    /// Clicks the element matching `css_selector`; a navigation it starts is
    /// waited for.
    pub fn click(&self, css_selector: &str) -> Result<(), BrowserError> {
        let element = self.element(css_selector)?;
        self.session_command("POST", &format!("/element/{element}/click"), Some(&json!({}))).map(drop)
    }

    /// The cookies the current page's host would be sent (of every port:
    /// cookies do not separate ports).
    pub fn cookies(&self) -> Result<Vec<Cookie>, BrowserError> {
        let command = "GET /session/{id}/cookie";
        let value = self.session_command("GET", "/cookie", None)?;
        let list = value.as_array().ok_or_else(|| protocol(command, "not a list", &value))?;
        list.iter()
            .map(|item| Cookie::from_webdriver(item).ok_or_else(|| protocol(command, "cookie", item)))
            .collect()
    }

    /// The cookie called `name` of the current page's host, if any.
    pub fn cookie(&self, name: &str) -> Result<Option<Cookie>, BrowserError> {
        Ok(self.cookies()?.into_iter().find(|cookie| cookie.name == name))
    }

    /// Stores `cookie`; its domain must be the current page's host (or empty).
    pub fn add_cookie(&self, cookie: &Cookie) -> Result<(), BrowserError> {
        self.session_command("POST", "/cookie", Some(&json!({"cookie": cookie.to_webdriver()}))).map(drop)
    }

    /// Deletes every cookie of the current page's host.
    pub fn delete_all_cookies(&self) -> Result<(), BrowserError> {
        self.session_command("DELETE", "/cookie", None).map(drop)
    }

    /// Waits until the current URL satisfies `predicate`; returns that URL.
    pub fn wait_for_url(
        &self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, BrowserError> {
        self.wait_for("a URL matching the predicate", timeout, || {
            let url = self.current_url()?;
            Ok(if predicate(&url) { Ok(url) } else { Err(url) })
        })
    }

    /// Waits until an element matches `css_selector`.
    pub fn wait_for_element(&self, css_selector: &str, timeout: Duration) -> Result<(), BrowserError> {
        self.wait_for(&format!("an element matching {css_selector:?}"), timeout, || {
            let found = self.exists(css_selector)?;
            Ok(if found { Ok(()) } else { Err(self.current_url().unwrap_or_default()) })
        })
    }

    /// Polls `check` until it gives `Ok(Ok(T))`; `Ok(Err(seen))` means not
    /// yet (and says what was seen), `Err` fails at once.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Result<T, String>, BrowserError>,
    ) -> Result<T, BrowserError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last_seen = match check()? {
                Ok(found) => return Ok(found),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                return Err(BrowserError::Timeout { waited_for: what.to_string(), last_seen });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The WebDriver id of the first element matching `css_selector`.
    fn element(&self, css_selector: &str) -> Result<String, BrowserError> {
        let command = "POST /session/{id}/element";
        let found = self.session_command(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css_selector})),
        )?;
        found
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| protocol(command, "no element reference", &found))
    }

    /// chromedriver's log so far (Chromium's own output is not in it).
    pub fn driver_log(&self) -> String {
        self.driver.log()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Lets Chromium close cleanly (and write what it writes on exit);
        // the process group is killed after this anyway.
        let path = format!("/session/{}", self.session_id);
        let _ =
            self.driver.command_within("DELETE", &path, None, "DELETE /session/{id}", END_SESSION_TIMEOUT);
    }
}

/// A chromedriver process, leader of its own process group, and the
/// folder that holds its log and Chromium's profile.
#[derive(Debug)]
struct Driver {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it is ready,
    /// trying another port if the one picked was taken meanwhile.
    fn start(binary: &Path) -> Result<Driver, BrowserError> {
        let start_error = |detail: String| BrowserError::DriverStart { detail };
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = temp_dir("browser").map_err(start_error)?;
            let port = free_port().map_err(|e| start_error(format!("finding a free port: {e}")))?;
            let log = fs::File::create(dir.join("chromedriver.log"))
                .map_err(|e| start_error(format!("log file: {e}")))?;
            let log_err = log.try_clone().map_err(|e| start_error(format!("log file: {e}")))?;
            let child = Command::new(binary)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                // Chromium inherits the group, so one kill reaches everything.
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    let _ = fs::remove_dir_all(&dir);
                    start_error(format!("running {}: {e}", binary.display()))
                })?;
            let mut driver = Driver { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir };
            // Dropping a driver that failed kills it and removes its folder.
            match driver.wait_ready() {
                Ok(()) => return Ok(driver),
                Err(error) if error.contains(PORT_TAKEN) => last_error = error,
                Err(error) => return Err(start_error(error)),
            }
        }
        Err(start_error(last_error))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited with {status}:\n{}", self.log()));
            }
            let status = http_kit::send(self.addr, &ClientRequest::get("/status"), Duration::from_secs(2));
            let ready = status.ok().and_then(|r| r.json().ok()).and_then(|v| v["value"]["ready"].as_bool());
            if ready == Some(true) {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("not ready after {DRIVER_READY_TIMEOUT:?}:\n{}", self.log()))
    }

    /// Sends a WebDriver command; the answer's `value`, or its error.
    fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        command: &str,
    ) -> Result<Value, BrowserError> {
        self.command_within(method, path, body, command, COMMAND_TIMEOUT)
    }

    /// [`Driver::command`] with its own bound on connecting and each read.
    fn command_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        command: &str,
        timeout: Duration,
    ) -> Result<Value, BrowserError> {
        let mut request = ClientRequest::new(method, path);
        if let Some(body) = body {
            request =
                request.header("content-type", "application/json; charset=utf-8").body(body.to_string());
        }
        let transport = |detail: String| BrowserError::Transport { command: command.to_string(), detail };
        let response = http_kit::send(self.addr, &request, timeout).map_err(|e| transport(e.to_string()))?;
        let answer = response.json().map_err(|e| transport(format!("{e}: {}", response.body_str())))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            let message = value.get("message").and_then(Value::as_str).unwrap_or_default();
            return Err(BrowserError::WebDriver {
                command: command.to_string(),
                error: error.to_string(),
                message: message.to_string(),
            });
        }
        if response.status != 200 {
            return Err(protocol(command, &format!("status {}", response.status), &answer));
        }
        Ok(value)
    }

    fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills chromedriver's process group (Chromium and its helpers are
    /// in it), then chromedriver itself should the group kill fail.
    fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("BATON_KEEP_BROWSER_DIR").is_none() {
            // A helper that was exiting may still have had files open.
            if fs::remove_dir_all(&self.dir).is_err() {
                std::thread::sleep(Duration::from_millis(200));
                let _ = fs::remove_dir_all(&self.dir);
            }
        }
    }
}

fn installed(program: &'static str, path: &Path, env: &'static str) -> Result<(), BrowserError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(BrowserError::NotInstalled { program, path: path.to_path_buf(), env })
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn string(value: &Value, command: &str) -> Result<String, BrowserError> {
    value.as_str().map(str::to_string).ok_or_else(|| protocol(command, "not a string", value))
}

fn protocol(command: &str, what: &str, answer: &Value) -> BrowserError {
    BrowserError::Protocol { command: command.to_string(), detail: format!("{what}: {answer}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let options =
            BrowserOptions { chromium: PathBuf::from("/nonexistent/chromium"), ..BrowserOptions::from_env() };
        let error = Browser::start_with(&options).unwrap_err();
        assert!(matches!(error, BrowserError::NotInstalled { program: "chromium", .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("install chromium and chromium-driver: make setup"), "{message}");
        assert!(message.contains("/nonexistent/chromium") && message.contains("BATON_CHROMIUM"), "{message}");
    }

    #[test]
    fn cookies_round_trip_through_the_webdriver_shape() {
        let cookie = Cookie {
            domain: "127.0.0.1".to_string(),
            http_only: true,
            same_site: Some(SameSite::Lax),
            expiry: Some(2_000_000_000),
            ..Cookie::new("sid", "v")
        };
        assert_eq!(Cookie::from_webdriver(&cookie.to_webdriver()), Some(cookie));
        let bare = Cookie::new("a", "b").to_webdriver();
        assert!(
            bare.get("domain").is_none() && bare.get("sameSite").is_none() && bare.get("expiry").is_none()
        );
        assert_eq!(Cookie::from_webdriver(&json!({"name": "x"})), None);
    }
}
