//! A real Chromium per test, driven with `fantoccini` through its own
//! chromedriver on loopback (plain HTTP, so no TLS stack).
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver` and
//! exports `ADMIT_TEST_CHROMEDRIVER`; without a chromedriver the browser
//! tests fail and say so. `ADMIT_TEST_SKIP_BROWSER=1` is the one explicit
//! opt-out. The machine's network is closed: the flags below stop
//! Chromium's own background connections.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long any wait lasts: the box is a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Skips the calling test only when browser tests were explicitly opted out of.
pub fn opted_out() -> bool {
    let out = std::env::var("ADMIT_TEST_SKIP_BROWSER").is_ok_and(|v| v == "1");
    if out {
        eprintln!("ADMIT_TEST_SKIP_BROWSER=1: browser test skipped");
    }
    out
}

fn chromedriver() -> PathBuf {
    let named = std::env::var_os("ADMIT_TEST_CHROMEDRIVER").map(PathBuf::from);
    let found = named.clone().or_else(|| {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "the console's browser tests need chromedriver ({}): run scripts/test (it installs \
             Debian's chromium and chromium-driver and exports ADMIT_TEST_CHROMEDRIVER), set \
             ADMIT_TEST_CHROMEDRIVER to one, or set ADMIT_TEST_SKIP_BROWSER=1 to skip them \
             knowingly",
            named.map_or("not on PATH".to_owned(), |p| format!(
                "{} is missing",
                p.display()
            ))
        ),
    }
}

/// How many times a test tries to start chromedriver, each on a new port.
const DRIVER_STARTS: usize = 3;

/// chromedriver on a free port, once it answers on it: the driver, the
/// port and its log; or why not (it exited, or did not answer in time).
async fn start_driver(driver_path: &Path) -> Result<(Driver, u16, PathBuf), String> {
    let profile = tempfile::tempdir().expect("a profile directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = profile.path().join("chromedriver.log");
    let mut command = Command::new(driver_path);
    command
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
    // Dropped on failure: killed and its profile removed.
    let mut driver = Driver { child, profile };

    // Ready once its own status endpoint answers (not merely something on
    // the port: another process may hold it).
    let status = format!("http://127.0.0.1:{port}/status");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let started = Instant::now();
    loop {
        if let Ok(Some(exit)) = driver.child.try_wait() {
            return Err(format!(
                "chromedriver on port {port} exited ({exit}):\n{}",
                tail(&log)
            ));
        }
        if let Ok(response) = client.get(&status).send().await
            && let Ok(body) = response.json::<Value>().await
            && body["value"]["ready"] == true
            && matches!(driver.child.try_wait(), Ok(None))
        {
            return Ok((driver, port, log));
        }
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "chromedriver on port {port} does not answer within {PATIENCE:?}:\n{}",
                tail(&log)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One headless Chromium session of a test, and where its screenshots go.
pub struct Browser {
    client: Client,
    /// The app under test, e.g. `http://127.0.0.1:PORT`.
    base: String,
    shots: PathBuf,
    shot: u32,
    /// Kept for its `Drop`: ends chromedriver and Chromium.
    _driver: Driver,
}

/// chromedriver in its own process group (Chromium and its helpers go with
/// it) and the profile; killed and removed on drop.
struct Driver {
    child: Child,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the test `test`,
    /// against the app at `base`; screenshots go to
    /// `target/console-screenshots/<test>/`.
    pub async fn start(test: &str, base: &str) -> Browser {
        let driver_path = chromedriver();
        // The port is found free and released before chromedriver binds it:
        // another process may take it in between. A start that fails is
        // tried again on another port.
        let mut failures = Vec::new();
        let (driver, port, log) = loop {
            match start_driver(&driver_path).await {
                Ok(started) => break started,
                Err(failure) if failures.len() < DRIVER_STARTS - 1 => failures.push(failure),
                Err(failure) => {
                    failures.push(failure);
                    panic!(
                        "chromedriver did not start in {DRIVER_STARTS} tries:\n{}",
                        failures.join("\n\n")
                    );
                }
            }
        };

        let chromium =
            std::env::var("ADMIT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let user_data = driver.profile.path().join("user-data");
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        let options = json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", user_data.display()),
                    "--window-size=1280,900",
                ],
        });
        capabilities.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a Chromium session ({chromium}): {e}\nchromedriver log:\n{}",
                    tail(&log)
                )
            });
        Browser {
            client,
            base: base.to_owned(),
            shots: screenshot_dir(test),
            shot: 0,
            _driver: driver,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn goto(&self, path: &str) {
        let opened = self.client.goto(&self.url(path)).await;
        opened.unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn refresh(&self) {
        self.client.refresh().await.expect("reload");
    }

    /// The path and query of the page shown, e.g. `/admin/login?next=%2Fadmin`.
    pub async fn location(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        let url = url.as_str();
        url.strip_prefix(&self.base).unwrap_or(url).to_owned()
    }

    /// The path of the page shown.
    pub async fn path(&self) -> String {
        let location = self.location().await;
        location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's path is one of `paths`; which one.
    pub async fn wait_path_in(&self, paths: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let path = self.path().await;
            if paths.contains(&path.as_str()) {
                return path;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "still at {}, not {paths:?}, after {PATIENCE:?}",
                self.location().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page's path is `path`.
    pub async fn wait_path(&self, path: &str) {
        self.wait_path_in(&[path]).await;
    }

    /// Waits until the page's path is no longer `path`.
    pub async fn wait_path_not(&self, path: &str) {
        let started = Instant::now();
        while self.path().await == path {
            assert!(
                started.elapsed() < PATIENCE,
                "still at {path} after {PATIENCE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn wait(&self, css: &str) -> Element {
        let found = (self.client.wait())
            .at_most(PATIENCE)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!(
                "no `{css}` on {} after {PATIENCE:?} ({e}); the page:\n{}",
                self.location().await,
                self.source().await
            ),
        }
    }

    /// Clicks `css` once it is there.
    pub async fn click(&self, css: &str) {
        let clicked = self.wait(css).await.click().await;
        clicked.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Types `keys` into `css` (a `fantoccini::key::Key` derefs to one).
    pub async fn send_keys(&self, css: &str, keys: &str) {
        let typed = self.wait(css).await.send_keys(keys).await;
        typed.unwrap_or_else(|e| panic!("type {keys:?} into `{css}`: {e}"));
    }

    /// Picks the `<option>` with this value of the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.wait(css).await;
        if let Err(e) = select.select_by_value(value).await {
            let html = select.html(false).await.unwrap_or_default();
            panic!("no option {value} ({e}) in {html}");
        }
    }

    /// The attribute `name` of `css` as the markup has it.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let value = self.wait(css).await.attr(name).await;
        value.unwrap_or_else(|e| panic!("attribute {name} of `{css}`: {e}"))
    }

    /// The text of `css` (waiting for it), trimmed.
    pub async fn text(&self, css: &str) -> String {
        let text = self.wait(css).await.text().await;
        text.unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
            .trim()
            .to_owned()
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        let found = self.client.find_all(Locator::Css(css)).await;
        found.unwrap_or_else(|e| panic!("find `{css}`: {e}")).len()
    }

    /// The page's HTML as the browser has it.
    pub async fn source(&self) -> String {
        let source = self.client.source().await;
        source.unwrap_or_else(|e| format!("(no source: {e})"))
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        let value = self.client.execute(script, vec![]).await;
        value.unwrap_or_else(|e| panic!("run {script}: {e}"))
    }

    /// Clicks the submit button of `form` (a CSS selector for the form).
    pub async fn submit(&self, form: &str) {
        self.click(&format!(
            "{form} button[type=submit], {form} input[type=submit], {form} button:not([type])"
        ))
        .await;
    }

    /// Types `value` into the field `name` of `form`, replacing what is there.
    pub async fn fill(&self, form: &str, name: &str, value: &str) {
        let field = self.wait(&format!("{form} [name={name}]")).await;
        let cleared = field.clear().await;
        cleared.unwrap_or_else(|e| panic!("clear {name} of `{form}`: {e}"));
        let typed = field.send_keys(value).await;
        typed.unwrap_or_else(|e| panic!("type into {name} of `{form}`: {e}"));
    }

    /// The login form, filled in and submitted.
    pub async fn sign_in(&self, name: &str, password: &str) {
        self.fill("form#login", "name", name).await;
        self.fill("form#login", "password", password).await;
        self.submit("form#login").await;
    }

    /// Reloads the page until the script `ready` returns true about it,
    /// running `between` (e.g. stepping the processor) before each reload.
    pub async fn reload_until<F, Fut>(&self, what: &str, mut between: F, ready: &str)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let started = Instant::now();
        while self.execute(ready).await != true {
            if started.elapsed() > PATIENCE {
                panic!(
                    "{what}: not so on {} after {PATIENCE:?}; the page:\n{}",
                    self.location().await,
                    self.source().await
                );
            }
            between().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.refresh().await;
        }
    }

    /// A screenshot of the page as `NN-<page>.png` in the test's folder.
    pub async fn screenshot(&mut self, page: &str) {
        self.shot += 1;
        let png = self.client.screenshot().await;
        let png = png.unwrap_or_else(|e| panic!("screenshot of {page}: {e}"));
        let path = self.shots.join(format!("{:02}-{page}.png", self.shot));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    async fn set_window_size(&self, width: u32, height: u32) {
        let resized = self.client.set_window_size(width, height).await;
        resized.unwrap_or_else(|e| panic!("resize to {width}x{height}: {e}"));
    }

    /// The page at 360 px wide: a screenshot, and no horizontal scrolling.
    pub async fn narrow(&mut self, page: &str) {
        self.set_window_size(360, 800).await;
        let measured = self
            .execute("return [window.innerWidth, document.documentElement.scrollWidth];")
            .await;
        self.screenshot(&format!("{page}-360px")).await;
        let inner = measured[0].as_f64().expect("innerWidth");
        let scroll = measured[1].as_f64().expect("scrollWidth");
        assert!(inner <= 400.0, "the window did not narrow: {inner} px");
        assert!(
            scroll <= inner + 1.0,
            "{page} at 360 px scrolls sideways: content {scroll} px wide in a {inner} px window"
        );
        self.set_window_size(1280, 900).await;
    }

    /// The value of the cookie `name` (HttpOnly ones too).
    pub async fn cookie(&self, name: &str) -> String {
        let cookie = self.client.get_named_cookie(name).await;
        let cookie = cookie.unwrap_or_else(|e| panic!("no cookie {name}: {e}"));
        cookie.value().to_owned()
    }
}

fn screenshot_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/console-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
