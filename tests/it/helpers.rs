//! Test harness: a fresh database per test, the sandbox in-process, the scheduler and workers
//! in-process or as real processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moonengage_accounts::{Role, tokens, users, workspaces};
use moonengage_core::campaigns::{self, Progress};
use moonengage_core::db;
use moonengage_core::pages::{self, NewPage};
use moonengage_core::settings::Settings;
use moonengage_core::subscribers::{self, NewSubscriber};
use moonengage_privacy::crypto::Keyring;
use moonengage_sandbox::{Sandbox, SandboxSettings, SandboxState};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The repository root (the tests crate lives one level down).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Where cargo put the binaries of this build (target/debug next to the test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

/// Connections per pool of every component a test starts, in-process or as a process.
pub const POOL_SIZE: u32 = 8;

/// Jobs a test's worker runs at once, in proportion to its small pool.
pub const CONCURRENCY: usize = 16;

const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    /// Pool on the test database.
    pub pool: PgPool,
    /// Its URL, for processes.
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    /// Creates and migrates a fresh database on the shared server.
    pub async fn new() -> TestDb {
        TestDb::on(SERVER_URL).await
    }

    /// Creates and migrates a fresh database on the server at `server` (no database name).
    pub async fn on(server: &str) -> TestDb {
        let name = format!("it_{:016x}", rand::random::<u64>());
        let url = db::recreate_database(&format!("{server}/postgres"), &name)
            .await
            .expect("create test database");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect test database");
        db::migrate(&pool).await.expect("migrate");
        TestDb {
            pool,
            url,
            name,
            server: server.to_owned(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = self.server.clone();
        // Best effort, off the test's runtime (which may be shutting down).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) =
                    sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// The repository's settings (config/default.toml) pointed at a test database and sandbox.
pub fn settings(db_url: &str, sandbox_url: &str) -> Settings {
    let mut settings = Settings::load_from(&repo_root().join("config")).expect("settings");
    settings.database.url = SecretString::from(db_url.to_owned());
    settings.messenger.base_url = sandbox_url.to_owned();
    settings.messenger.request_timeout_ms = 3_000;
    settings.scheduler.tick_ms = 100;
    settings.scheduler.fanout_ms = 100;
    settings.scheduler.completion_ms = 100;
    settings.queue.poll_interval_ms = 200;
    settings.queue.retry_base_ms = 100;
    settings.queue.retry_max_ms = 2_000;
    settings.redis.key_prefix = format!("it-{:016x}", rand::random::<u64>());
    // Tests run side by side on one Postgres (max_connections 100): small pools each.
    settings.database.max_connections = POOL_SIZE;
    settings.worker.concurrency = CONCURRENCY;
    settings
}

/// The login of the harness workspace's owner.
pub const OWNER_EMAIL: &str = "owner@it.example";

/// The login of the harness's operator (see [`Harness::operator_token`]).
pub const OPERATOR_EMAIL: &str = "operator@it.example";

/// A person to seed.
#[derive(Debug, Clone)]
pub struct Person {
    /// Page-scoped id.
    pub psid: String,
    /// First name.
    pub first_name: String,
    /// Last message to the Page.
    pub last_interaction_at: DateTime<Utc>,
}

impl Person {
    /// A person inside their 24-hour window, with a random 16-digit PSID.
    pub fn in_window(first_name: &str) -> Person {
        Person {
            psid: random_psid(),
            first_name: first_name.to_owned(),
            last_interaction_at: Utc::now() - chrono::Duration::minutes(10),
        }
    }

    /// A person whose window closed.
    pub fn outside_window(first_name: &str) -> Person {
        Person {
            last_interaction_at: Utc::now() - chrono::Duration::hours(30),
            ..Person::in_window(first_name)
        }
    }
}

/// A PSID shaped like Facebook's.
pub fn random_psid() -> String {
    (1_000_000_000_000_000u64 + rand::random::<u64>() % 8_000_000_000_000_000).to_string()
}

/// The system under test, in-process: database, sandbox, and whatever components a test starts.
pub struct Harness {
    /// The test database.
    pub db: TestDb,
    /// Settings pointing at the test database and sandbox.
    pub settings: Settings,
    /// The keyring the processes use.
    pub keyring: Keyring,
    /// The sandbox's in-memory state.
    pub sandbox: SandboxState,
    /// The sandbox's URL.
    pub sandbox_url: String,
    /// The workspace the harness's Pages belong to (owned by [`OWNER_EMAIL`]).
    pub workspace_id: i64,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Held to the end of the test (and dropped after everything it started).
    _machine: MachineShare,
}

/// The machine the tests of this binary share: most take a shared turn and run side by side;
/// those that count a Page's busiest second to within 10% take it alone, since a CPU stall of
/// a tenth of a second anywhere between the limiter and the sandbox's clock (other tests'
/// processes on the same two cores) is counted as a burst.
static MACHINE: std::sync::LazyLock<std::sync::Arc<tokio::sync::RwLock<()>>> =
    std::sync::LazyLock::new(Default::default);

enum MachineShare {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

impl Harness {
    /// A fresh database and a sandbox without rate limit or latency.
    pub async fn new() -> Harness {
        Harness::build(
            MachineShare::Shared(MACHINE.clone().read_owned().await),
            TestDb::new().await,
        )
        .await
    }

    /// Like [`Harness::new`], on a Postgres server of the test's own (see [`OwnPostgres`]).
    pub async fn on(server: &OwnPostgres) -> Harness {
        Harness::build(
            MachineShare::Shared(MACHINE.clone().read_owned().await),
            TestDb::on(&server.url()).await,
        )
        .await
    }

    /// Like [`Harness::new`], but no other harness of this test binary runs meanwhile: for
    /// tests that count a Page's busiest second (see `MACHINE`).
    pub async fn alone() -> Harness {
        Harness::build(
            MachineShare::Alone(MACHINE.clone().write_owned().await),
            TestDb::new().await,
        )
        .await
    }

    async fn build(machine: MachineShare, db: TestDb) -> Harness {
        let sandbox = Sandbox::build(SandboxSettings {
            rate_limit_per_page: 0,
            ..SandboxSettings::default()
        })
        .await
        .expect("sandbox");
        let sandbox_url = sandbox.base_url();
        let state = sandbox.state();
        let stop = CancellationToken::new();
        let sandbox_task = tokio::spawn({
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = sandbox.run_until_stopped() => {}
                    () = stop.cancelled() => {}
                }
            }
        });
        let settings = settings(&db.url, &sandbox_url);
        let keyring = Keyring::load_or_create(&db.pool, &settings.crypto)
            .await
            .expect("keyring");
        let workspace_id = workspaces::create(&db.pool, "it", OWNER_EMAIL)
            .await
            .expect("workspace")
            .workspace_id;
        Harness {
            db,
            settings,
            keyring,
            sandbox: state,
            sandbox_url,
            workspace_id,
            stop,
            tasks: vec![sandbox_task],
            _machine: machine,
        }
    }

    /// The pool on the test database.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// A personal API token of the harness workspace's owner, acting as `role`.
    pub async fn token(&self, role: Role) -> String {
        let owner = users::id_by_email(self.pool(), OWNER_EMAIL)
            .await
            .expect("owner look-up")
            .expect("the harness owner");
        let mut conn = self.pool().acquire().await.expect("a connection");
        let created = tokens::create(
            &mut conn,
            tokens::Request {
                workspace_id: self.workspace_id,
                user_id: owner,
                name: "it",
                role,
                days: 1,
                max_days: 1,
            },
        )
        .await
        .expect("token");
        created.token.expose_secret().to_owned()
    }

    /// A personal API token of the harness workspace's owner, with the owner's role.
    pub async fn owner_token(&self) -> String {
        self.token(Role::Owner).await
    }

    /// A personal API token of one of MoonEngage's operators (made as `moonengage operator
    /// create` makes them: a workspace of their own): for the platform's routes.
    pub async fn operator_token(&self) -> String {
        let operator = workspaces::create(self.pool(), "MoonEngage operators", OPERATOR_EMAIL)
            .await
            .expect("operator workspace");
        users::make_operator(self.pool(), operator.owner_id)
            .await
            .expect("make operator");
        let created = tokens::create(
            &mut self.pool().acquire().await.expect("connection"),
            tokens::Request {
                workspace_id: operator.workspace_id,
                user_id: operator.owner_id,
                name: "it operator",
                role: Role::Owner,
                days: 1,
                max_days: 1,
            },
        )
        .await
        .expect("operator token");
        created.token.expose_secret().to_owned()
    }

    /// Registers a Page whose token the sandbox accepts; returns its internal id.
    pub async fn add_page(&self, fb_page_id: &str) -> i64 {
        pages::register(
            self.pool(),
            &self.keyring,
            &NewPage {
                workspace_id: self.workspace_id,
                fb_page_id,
                name: &format!("Page {fb_page_id}"),
                access_token: &SecretString::from(format!("sandbox-token-{fb_page_id}")),
                send_rate: 250,
            },
        )
        .await
        .expect("register page")
    }

    /// Adds opted-in people to a Page.
    pub async fn seed(&self, page_id: i64, fb_page_id: &str, people: &[Person]) {
        let rows: Vec<NewSubscriber> = people
            .iter()
            .map(|p| NewSubscriber {
                psid: p.psid.clone(),
                first_name: Some(p.first_name.clone()),
                opted_in_at: Utc::now() - chrono::Duration::days(1),
                consent_source: "test".into(),
                last_interaction_at: p.last_interaction_at,
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            subscribers::insert_batch(self.pool(), &self.keyring, page_id, fb_page_id, chunk)
                .await
                .expect("seed");
        }
    }

    /// Creates a campaign with the given template and schedules it now.
    pub async fn campaign(&self, page_id: i64, template: &str) -> i64 {
        self.campaign_in(self.workspace_id, page_id, template).await
    }

    /// [`Harness::campaign`] on a Page of another workspace.
    pub async fn campaign_in(&self, workspace_id: i64, page_id: i64, template: &str) -> i64 {
        let new = campaigns::NewCampaign {
            workspace_id,
            page_id,
            name: "test campaign",
            template,
        };
        let id = campaigns::create(self.pool(), &new)
            .await
            .expect("create campaign");
        campaigns::schedule(self.pool(), workspace_id, id, Utc::now())
            .await
            .expect("schedule");
        id
    }

    /// Runs a scheduler in this process.
    pub async fn start_scheduler(&mut self) {
        let scheduler = moonengage_scheduler::Scheduler::build(self.settings.clone())
            .await
            .expect("scheduler");
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = scheduler.run_until(stop.cancelled_owned()).await;
        }));
    }

    /// Runs a worker in this process, under a name of its own.
    pub async fn start_worker(&mut self, name: &str) {
        let worker = moonengage_worker::Worker::build(self.settings.clone())
            .await
            .expect("worker")
            .named(name);
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = worker.run_until(stop.cancelled_owned()).await;
        }));
    }

    /// Runs the web process in this process on a free port; returns its base URL.
    pub async fn start_web(&mut self) -> String {
        let mut settings = self.settings.clone();
        settings.web.port = 0;
        let app = moonengage_web::App::build(settings).await.expect("web");
        let url = format!("http://127.0.0.1:{}", app.port());
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = app.run_until(stop.cancelled_owned()).await;
        }));
        url
    }

    /// Waits until a campaign completes and returns its final counters.
    pub async fn wait_completed(&self, campaign_id: i64, within: Duration) -> Progress {
        wait_completed(self.pool(), self.workspace_id, campaign_id, within).await
    }

    /// Waits until the sandbox has received at least `n` messages (a campaign is under way),
    /// failing the test after a minute rather than hanging.
    pub async fn wait_received(&self, n: u64) {
        let started = Instant::now();
        while self.sandbox.stats().received_total < n {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the sandbox never received {n} messages"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The texts the sandbox received for one person, in order.
    pub fn texts_to(&self, psid: &str) -> Vec<String> {
        self.sandbox
            .messages(&moonengage_sandbox::MessageFilter {
                psid: Some(psid.to_owned()),
                ..moonengage_sandbox::MessageFilter::default()
            })
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    /// When the sandbox received each message, in milliseconds, oldest first.
    pub fn received_times(&self) -> Vec<u64> {
        let mut times: Vec<u64> = self
            .sandbox
            .messages(&moonengage_sandbox::MessageFilter::default())
            .iter()
            .map(|m| m.received_at_ms)
            .collect();
        times.sort_unstable();
        times
    }

    /// Environment for a real process of ours pointed at this harness.
    pub fn process_env(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.db.url.clone()),
            (
                "MOONENGAGE_CONFIG_DIR".into(),
                repo_root().join("config").display().to_string(),
            ),
            (
                "MOONENGAGE__MESSENGER__BASE_URL".into(),
                self.sandbox_url.clone(),
            ),
            ("MOONENGAGE__SCHEDULER__TICK_MS".into(), "100".into()),
            ("MOONENGAGE__SCHEDULER__FANOUT_MS".into(), "100".into()),
            ("MOONENGAGE__SCHEDULER__COMPLETION_MS".into(), "100".into()),
            ("MOONENGAGE__QUEUE__POLL_INTERVAL_MS".into(), "200".into()),
            (
                "MOONENGAGE__REDIS__KEY_PREFIX".into(),
                self.settings.redis.key_prefix.clone(),
            ),
            (
                "MOONENGAGE__DATABASE__MAX_CONNECTIONS".into(),
                POOL_SIZE.to_string(),
            ),
            (
                "MOONENGAGE__WORKER__CONCURRENCY".into(),
                CONCURRENCY.to_string(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ]
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The most of `times` (sorted, ms) that fall in any window of `window_ms`: the busiest
/// stretch of sending, for checking a rate from the receiving side.
pub fn busiest(times: &[u64], window_ms: u64) -> usize {
    times
        .iter()
        .enumerate()
        .map(|(i, start)| times[i..].partition_point(|t| *t < start + window_ms))
        .max()
        .unwrap_or(0)
}

/// Waits until a campaign of the workspace completes and returns its final counters.
pub async fn wait_completed(
    pool: &PgPool,
    workspace_id: i64,
    campaign_id: i64,
    within: Duration,
) -> Progress {
    let started = Instant::now();
    loop {
        let progress = campaigns::progress(pool, workspace_id, campaign_id)
            .await
            .expect("progress")
            .expect("campaign exists");
        if progress.state == campaigns::CampaignState::Completed {
            return progress;
        }
        assert!(
            started.elapsed() < within,
            "campaign {campaign_id} did not complete within {within:?}: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fans a running campaign out to the end from where its cursor stands, in batches of `batch`,
/// as the scheduler leader does (without pacing when `pace` is false).
pub async fn fan_out_all(pool: &PgPool, campaign_id: i64, batch: i64, pace: bool) {
    let cursor = || async {
        sqlx::query_scalar::<_, i64>("SELECT fanout_cursor FROM campaigns WHERE id = $1")
            .bind(campaign_id)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    while !moonengage_queue::sends::fan_out(pool, campaign_id, cursor().await, batch, pace)
        .await
        .unwrap()
    {}
}

/// One of our binaries running as a real process; killed if the test drops it.
pub struct Process {
    /// The child process.
    pub child: Child,
}

impl Process {
    /// Starts `target/<profile>/<binary>` with the given environment.
    pub fn start(binary: &str, env: &[(String, String)]) -> Process {
        let path = bin_dir().join(binary);
        assert!(
            path.exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            path.display()
        );
        let child = Command::new(path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        Process { child }
    }

    /// Like [`Process::start`], with every line it writes (stdout and stderr) appended to
    /// `output`, for tests that read what a process logs.
    pub fn start_logged(
        binary: &str,
        env: &[(String, String)],
        output: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Process {
        use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
        fn collect(
            stream: impl AsyncRead + Unpin + Send + 'static,
            output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        ) {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let mut child = Command::new(bin_dir().join(binary))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn (run `cargo build --workspace --bins` first)");
        collect(child.stdout.take().expect("piped"), output.clone());
        collect(child.stderr.take().expect("piped"), output.clone());
        Process { child }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits for the exit, failing the test after `within`.
    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("process did not exit in time")
            .expect("wait")
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` of the test's own on a free port, without persistence: started again after
/// [`RedisServer::stop`], it is empty, as after a restart or a failover that lost its memory.
pub struct RedisServer {
    /// The port it listens on (the same after a restart).
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts it and waits until it answers.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// Its URL, for `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: nothing is saved, no client is told).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Starts it (again, empty) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let started = Instant::now();
        while self.command(&["PING"]).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one command (`FLUSHALL`, `DBSIZE`…) on a connection of its own.
    pub async fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }
}

/// A TCP proxy in front of a Redis, for one process: [`RedisProxy::cut`] drops its
/// connections and refuses new ones (that process alone loses Redis, as in a network split),
/// [`RedisProxy::mend`] lets it through again.
pub struct RedisProxy {
    /// The port the process connects to.
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl RedisProxy {
    /// Forwards a free port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> RedisProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    drop(inbound);
                    continue;
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        RedisProxy {
            port,
            cut,
            connections,
            task,
        }
    }

    /// Connections forwarded so far (a reconnection after [`RedisProxy::mend`] shows the process
    /// came back to Redis).
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The URL the process is given as `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy and refuses new ones until [`RedisProxy::mend`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards connections again.
    pub fn mend(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PostgreSQL server of the test's own (a fresh cluster in a temporary folder, on a free
/// port), for tests that restart or crash the database under a running system without
/// disturbing the tests that share the machine's server.
pub struct OwnPostgres {
    port: u16,
    dir: PathBuf,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl OwnPostgres {
    /// Creates the cluster (as the `postgres` user: Postgres refuses to run as root) and starts it.
    pub async fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!("it-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        let server = OwnPostgres {
            port: free_port(),
            dir,
        };
        let chown = Command::new("chown")
            .args(["postgres:postgres", &server.dir.display().to_string()])
            .status()
            .await
            .expect("chown");
        assert!(chown.success());
        server
            .as_postgres(&[
                &format!("{PG_BIN}/initdb"),
                "-D",
                &server.dir.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ])
            .await;
        server.pg_ctl(&["start"]).await;
        server
    }

    /// Its URL without a database name.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Crashes it (immediate shutdown: no checkpoint, every connection cut) and starts it again.
    pub async fn crash_and_restart(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]).await;
        self.pg_ctl(&["start"]).await;
    }

    /// Stops it cleanly (fast shutdown: every connection is cut, a checkpoint is written); the
    /// same port and data folder come back with [`OwnPostgres::start_again`].
    pub async fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]).await;
    }

    /// Starts it again after [`OwnPostgres::stop`].
    pub async fn start_again(&self) {
        self.pg_ctl(&["start"]).await;
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut command = vec![
            format!("{PG_BIN}/pg_ctl"),
            "-D".into(),
            self.dir.display().to_string(),
            "-o".into(),
            options,
            "-l".into(),
            self.dir.join("log").display().to_string(),
            "-w".into(),
        ];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        self.as_postgres(&command).await;
    }

    async fn as_postgres(&self, command: &[&str]) {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(command)
            .current_dir(&self.dir)
            .output()
            .await
            .expect("runuser");
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl")])
            .args([
                "-D",
                &self.dir.display().to_string(),
                "stop",
                "-m",
                "immediate",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it holds, failing the test with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the `moonengage` command line against the harness's database and expects success;
/// returns what it printed.
pub async fn moonengage(h: &Harness, args: &[&str]) -> String {
    let output = Command::new(bin_dir().join("moonengage"))
        .args(args)
        .envs(h.process_env())
        .current_dir(repo_root())
        .output()
        .await
        .expect("moonengage is built (cargo build --workspace --bins)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
