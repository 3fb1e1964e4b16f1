//! The run: deliveries scheduled at a fixed rate by a thread with fine-grained sleeps, taken in
//! schedule order by whichever of the keep-alive connections is free, each request's latency
//! counted from its scheduled time. With every connection busy, scheduled requests wait for
//! one and that wait is part of their latency, as it would be for Facebook's deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

use crate::deliveries::{Delivery, Plan};

/// Deliveries generated for an unpaced run (`--rate 0`), sent round and round.
const UNPACED_POOL: usize = 50_000;

/// How a run loads the server.
#[derive(Args)]
pub struct LoadArgs {
    /// Where to post.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/messenger")]
    pub url: String,
    /// Deliveries per second; 0 sends back to back on every connection (capacity).
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// How long deliveries are scheduled for.
    #[arg(long, default_value_t = 30)]
    pub seconds: u32,
    /// Keep-alive connections, each carrying one request at a time.
    #[arg(long, default_value_t = 128)]
    pub connections: usize,
    /// Distinct senders (PSIDs) the messages come from.
    #[arg(long, default_value_t = 5000)]
    pub senders: usize,
    /// Messages in each delivery.
    #[arg(long, default_value_t = 1)]
    pub events_per_delivery: usize,
    /// Facebook's id of the Page the messages are addressed to.
    #[arg(long, default_value = "1000000000000042")]
    pub page: String,
    /// The app secret that signs deliveries (`messenger.app_secret`).
    #[arg(
        long,
        env = "MOONENGAGE__MESSENGER__APP_SECRET",
        default_value = "dev-app-secret-not-for-production",
        hide_env_values = true
    )]
    pub app_secret: String,
    /// The status that counts as success (404 against a path the server does not have).
    #[arg(long, default_value_t = 200)]
    pub expect_status: u16,
    /// A request without an answer by then is an error (and its connection is replaced).
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

impl LoadArgs {
    /// What to generate for this run.
    pub fn deliveries(&self) -> Plan<'_> {
        Plan {
            count: self.scheduled().unwrap_or(UNPACED_POOL),
            events_per_delivery: self.events_per_delivery,
            senders: self.senders,
            page: &self.page,
            app_secret: &self.app_secret,
        }
    }

    /// Deliveries on the schedule; `None` when unpaced.
    fn scheduled(&self) -> Option<usize> {
        (self.rate > 0).then(|| self.rate as usize * self.seconds as usize)
    }
}

/// What a run measured. Latencies and lags are in microseconds, sorted.
pub struct Outcome {
    /// Requests put on the wire.
    pub sent: u64,
    /// Answered with the expected status.
    pub ok: u64,
    /// Failed, timed out or answered otherwise.
    pub errors: u64,
    /// Scheduled time to complete response, of the successful requests.
    pub latencies: Vec<u32>,
    /// Scheduled time to the request leaving the generator: time spent waiting for a free
    /// connection (or the generator's own lateness).
    pub lags: Vec<u32>,
    /// First scheduled send to the last response.
    pub elapsed: Duration,
}

/// Where requests go.
struct Target {
    address: String,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("--url {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--url must be http:// (got {url})"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("--url {url} has no host"))?;
        Ok(Target {
            address: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            host: HeaderValue::from_str(authority.as_str())?,
            path: uri.path_and_query().map_or("/", |p| p.as_str()).parse()?,
        })
    }
}

/// Which delivery to send next, and when it was due.
enum Schedule {
    /// Fed by the pacing thread in schedule order.
    Paced(Mutex<mpsc::UnboundedReceiver<(usize, Instant)>>),
    /// Due as soon as a connection is free, until `until`.
    Unpaced { next: AtomicUsize, until: Instant },
}

impl Schedule {
    async fn next(&self) -> Option<(usize, Instant)> {
        match self {
            Schedule::Paced(queue) => queue.lock().await.recv().await,
            Schedule::Unpaced { next, until } => {
                let now = Instant::now();
                (now < *until).then(|| (next.fetch_add(1, Ordering::Relaxed), now))
            }
        }
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    errors: u64,
    latencies: Vec<u32>,
    lags: Vec<u32>,
    last_done: Option<Instant>,
}

/// Opens the connections, then sends every scheduled delivery and waits for the last answer.
pub async fn run(args: &LoadArgs, deliveries: Vec<Delivery>) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let target = Arc::new(Target::parse(&args.url)?);
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(Some(connect(&target.address).await?));
    }
    let deliveries = Arc::new(deliveries);
    let timeout = Duration::from_secs(args.timeout_secs);
    let expected = StatusCode::from_u16(args.expect_status)?;
    let start = Instant::now() + Duration::from_millis(10);
    let schedule = Arc::new(match args.scheduled() {
        Some(count) => Schedule::Paced(Mutex::new(pace(start, args.rate, count))),
        None => Schedule::Unpaced {
            next: AtomicUsize::new(0),
            until: start + Duration::from_secs(args.seconds.into()),
        },
    });
    let workers: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let (schedule, deliveries, target) =
                (schedule.clone(), deliveries.clone(), target.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                work(
                    connection,
                    &schedule,
                    &deliveries,
                    &target,
                    expected,
                    timeout,
                )
                .await
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        total.sent += tally.sent;
        total.ok += tally.ok;
        total.errors += tally.errors;
        total.latencies.extend(tally.latencies);
        total.lags.extend(tally.lags);
        total.last_done = total.last_done.max(tally.last_done);
    }
    total.latencies.sort_unstable();
    total.lags.sort_unstable();
    Ok(Outcome {
        sent: total.sent,
        ok: total.ok,
        errors: total.errors,
        latencies: total.latencies,
        lags: total.lags,
        elapsed: total.last_done.map_or(Duration::ZERO, |last| last - start),
    })
}

/// Starts the pacing thread: delivery `i` is released at `start + i / rate`. A thread's sleep
/// is precise to tens of microseconds, where the runtime's timer rounds up to a millisecond.
fn pace(start: Instant, rate: u32, count: usize) -> mpsc::UnboundedReceiver<(usize, Instant)> {
    let (due, queue) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for i in 0..count {
            let at = start + Duration::from_nanos((i as u64 * 1_000_000_000) / u64::from(rate));
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if due.send((i, at)).is_err() {
                return;
            }
        }
    });
    queue
}

/// One connection's loop: the next due delivery, sent and timed; a failed connection is
/// replaced before the next one.
async fn work(
    mut connection: Option<SendRequest<Full<Bytes>>>,
    schedule: &Schedule,
    deliveries: &[Delivery],
    target: &Target,
    expected: StatusCode,
    timeout: Duration,
) -> Tally {
    let mut tally = Tally::default();
    while let Some((i, due)) = schedule.next().await {
        let leaving = Instant::now();
        tally.sent += 1;
        tally.lags.push(micros(leaving - due));
        let delivery = &deliveries[i % deliveries.len()];
        let attempt = async {
            let sender = match connection {
                Some(ref mut sender) => sender,
                None => connection.insert(connect(&target.address).await?),
            };
            send(sender, target, delivery).await
        };
        let answer = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        let done = Instant::now();
        tally.last_done = Some(done);
        match answer {
            Ok(status) if status == expected => {
                tally.ok += 1;
                tally.latencies.push(micros(done - due));
            }
            Ok(_) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                connection = None;
            }
        }
    }
    tally
}

/// A keep-alive HTTP/1.1 connection with Nagle's algorithm off.
async fn connect(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Posts one delivery and reads the whole answer.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    delivery: &Delivery,
) -> anyhow::Result<StatusCode> {
    sender.ready().await?;
    let request = Request::post(target.path.clone())
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("x-hub-signature-256", delivery.signature.clone())
        .body(Full::new(delivery.body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}
