//! Every metric definition, registered once in the process-wide registry.

use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::busiest::BusiestSecond;
use super::{
    DSR_TYPES, OPT_INS, UNSUBSCRIBE_CHANNELS, WEBHOOK_KINDS, WEBHOOK_PROBLEMS, WEBHOOK_RESULTS,
};

/// Outcomes of one job execution as the queue sees it: `ok`, or `error` (the queue retries).
pub(super) const JOB_OUTCOMES: &[&str] = &["ok", "error"];

/// Seconds a job body takes: a send is tens of milliseconds, a DSR export may take minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Seconds between a job becoming due and a worker starting it (the queue hands run times in
/// whole seconds, so the first bucket is one second).
const WAIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Seconds from a webhook delivery's arrival to its answer: milliseconds when healthy, and
/// Facebook gives up at 5 s.
const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Seconds a send waited for its Page's rate limiter.
const LIMITER_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];

/// The metric families; see each field for what it measures and who sets it. Only the gauges the
/// scheduler leader publishes from the database are public: the scheduler sets them.
pub struct Families {
    pub(super) registry: Registry,
    pub(super) names: Vec<String>,
    // Process.
    pub(super) up: GaugeVec,
    pub(super) build_info: GaugeVec,
    pub(super) start_time: GaugeVec,
    // Job executions (every worker, through the job layer).
    pub(super) job_executions: IntCounterVec,
    pub(super) job_duration: HistogramVec,
    pub(super) job_wait: HistogramVec,
    pub(super) job_retries: IntCounterVec,
    pub(super) jobs_in_flight: GaugeVec,
    // The queue as Postgres holds it (scheduler leader).
    /// Jobs by queue and state.
    pub queue_jobs: GaugeVec,
    /// Age of the oldest due job, by queue.
    pub queue_oldest_ready: GaugeVec,
    /// Workers whose heartbeat is recent, by queue.
    pub workers_alive: GaugeVec,
    /// Workers holding a job, by queue.
    pub workers_busy: GaugeVec,
    /// 1 on the scheduler leader, 0 on a standby.
    pub leader: GaugeVec,
    // Sending (workers).
    pub(super) sends: IntCounterVec,
    pub(super) send_errors: IntCounterVec,
    pub(super) limiter_wait: HistogramVec,
    pub(super) busiest_second: BusiestSecond,
    pub(super) page_pauses: IntCounterVec,
    pub(super) page_halts: IntCounterVec,
    // Pages and campaigns as Postgres holds them (scheduler leader).
    /// A Page's send rate.
    pub page_rate_limit: GaugeVec,
    /// 1 while a Page is paused.
    pub page_paused: GaugeVec,
    /// 1 while a Page is halted.
    pub page_halted: GaugeVec,
    /// A campaign's recipients.
    pub campaign_recipients: GaugeVec,
    /// A campaign's sent messages.
    pub campaign_sent: GaugeVec,
    /// A campaign's recipients with a final outcome.
    pub campaign_finished: GaugeVec,
    // Webhooks and privacy.
    pub(super) webhooks: IntCounterVec,
    pub(super) webhook_malformed: IntCounterVec,
    pub(super) webhook_ack: HistogramVec,
    pub(super) opt_ins: IntCounterVec,
    pub(super) unsubscribes: IntCounterVec,
    pub(super) dsr_received: IntCounterVec,
    pub(super) exports_downloaded: IntCounterVec,
    pub(super) dsr_completed: IntCounterVec,
    /// Open data-subject requests, by type.
    pub dsr_open: GaugeVec,
    /// Age of the oldest open request, by type.
    pub dsr_oldest_open: GaugeVec,
    /// Seconds left to report the earliest open incident.
    pub incident_deadline: GaugeVec,
}

/// Registers collectors and remembers their names.
struct Builder {
    registry: Registry,
    names: Vec<String>,
}

impl Builder {
    fn add<C: Collector + Clone + 'static>(&mut self, collector: C) -> C {
        self.names
            .extend(collector.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric names are unique and valid");
        collector
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
        self.add(vec)
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
        self.add(vec)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let vec = HistogramVec::new(opts, labels).expect("valid histogram");
        self.add(vec)
    }
}

impl Families {
    pub(super) fn new() -> Families {
        let mut b = Builder {
            registry: Registry::new(),
            names: Vec::new(),
        };
        Families {
            up: b.gauge("moonengage_up", "1 while the process runs.", &["process"]),
            build_info: b.gauge(
                "moonengage_build_info",
                "Always 1; the labels say which build runs.",
                &["process", "version"],
            ),
            start_time: b.gauge(
                "moonengage_process_start_time_seconds",
                "Unix time the process started.",
                &["process"],
            ),
            job_executions: b.counter(
                "moonengage_job_executions_total",
                "Job executions by queue and outcome (ok, or error: retried by the queue).",
                &["queue", "outcome"],
            ),
            job_duration: b.histogram(
                "moonengage_job_duration_seconds",
                "Time a job body took, by queue and outcome.",
                &["queue", "outcome"],
                DURATION_BUCKETS,
            ),
            job_wait: b.histogram(
                "moonengage_job_queue_wait_seconds",
                "Time from a job's run time (enqueue, or its retry time) to a worker starting it.",
                &["queue"],
                WAIT_BUCKETS,
            ),
            job_retries: b.counter(
                "moonengage_job_retries_total",
                "Executions that were a retry of an earlier attempt, by queue.",
                &["queue"],
            ),
            jobs_in_flight: b.gauge(
                "moonengage_jobs_in_flight",
                "Jobs this worker process is executing now, by queue.",
                &["queue"],
            ),
            queue_jobs: b.gauge(
                "moonengage_queue_jobs",
                "Jobs in Postgres by queue and state (pending: due; scheduled: run time ahead; \
                 failed: will retry; dead: out of attempts). Published by the scheduler leader.",
                &["queue", "state"],
            ),
            queue_oldest_ready: b.gauge(
                "moonengage_queue_oldest_ready_age_seconds",
                "Age of the oldest job that is due and not taken (0 when none), by queue.",
                &["queue"],
            ),
            workers_alive: b.gauge(
                "moonengage_queue_workers_alive",
                "Worker processes whose heartbeat is recent, by queue.",
                &["queue"],
            ),
            workers_busy: b.gauge(
                "moonengage_queue_workers_busy",
                "Worker processes holding at least one job, by queue.",
                &["queue"],
            ),
            leader: b.gauge(
                "moonengage_scheduler_leader",
                "1 on the scheduler that holds the leader lock and publishes the database gauges.",
                &[],
            ),
            sends: b.counter(
                "moonengage_sends_total",
                "Send attempts by Page (internal id) and recorded outcome.",
                &["page", "outcome"],
            ),
            send_errors: b.counter(
                "moonengage_send_errors_total",
                "Send API errors by Page (internal id) and error class.",
                &["page", "class"],
            ),
            limiter_wait: b.histogram(
                "moonengage_rate_limiter_wait_seconds",
                "Time a send waited for its Page's rate limiter.",
                &["page"],
                LIMITER_BUCKETS,
            ),
            busiest_second: b.add(BusiestSecond::new(
                GaugeVec::new(
                    Opts::new(
                        "moonengage_page_sends_busiest_second",
                        "Most sends of a Page this worker released in any one second of the last \
                         minute (to 10 ms). Summed over workers, at least the Page's busiest \
                         second: above the Page's rate, it burst.",
                    ),
                    &["page"],
                )
                .expect("valid gauge"),
            )),
            page_pauses: b.counter(
                "moonengage_page_pauses_total",
                "Times a Page was paused because Facebook rate-limited it.",
                &["page"],
            ),
            page_halts: b.counter(
                "moonengage_page_halts_total",
                "Times a Page was halted by a fatal Page error (token, policy).",
                &["page"],
            ),
            page_rate_limit: b.gauge(
                "moonengage_page_rate_limit",
                "A Page's configured send rate, messages per second.",
                &["page"],
            ),
            page_paused: b.gauge(
                "moonengage_page_paused",
                "1 while a Page is paused after a rate limit.",
                &["page"],
            ),
            page_halted: b.gauge(
                "moonengage_page_halted",
                "1 while a Page is halted.",
                &["page"],
            ),
            campaign_recipients: b.gauge(
                "moonengage_campaign_recipients",
                "Recipients of a running (or, for an hour, finished) campaign so far.",
                &["campaign", "page"],
            ),
            campaign_sent: b.gauge(
                "moonengage_campaign_sent",
                "Messages of a campaign that Facebook accepted.",
                &["campaign", "page"],
            ),
            campaign_finished: b.gauge(
                "moonengage_campaign_finished",
                "Recipients of a campaign with a final outcome (sent, skipped, failed, unknown).",
                &["campaign", "page"],
            ),
            webhooks: b.counter(
                "moonengage_webhooks_received_total",
                "Webhook events received by kind and result.",
                &["kind", "result"],
            ),
            webhook_malformed: b.counter(
                "moonengage_webhook_events_malformed_total",
                "Webhook events skipped because they lack what they need (the rest of their \
                 delivery is stored), by problem.",
                &["problem"],
            ),
            webhook_ack: b.histogram(
                "moonengage_webhook_ack_seconds",
                "Time from a webhook delivery's arrival to its answer, body read and storing \
                 included (Facebook gives up at 5 s and resends), by status class.",
                &["status"],
                ACK_BUCKETS,
            ),
            opt_ins: b.counter(
                "moonengage_opt_ins_total",
                "People opted in by a message: new to the Page, or returning (unreachable, \
                 objected, or stopped and wrote a start keyword).",
                &["how"],
            ),
            unsubscribes: b.counter(
                "moonengage_unsubscribes_total",
                "People unsubscribed, by channel.",
                &["channel"],
            ),
            dsr_received: b.counter(
                "moonengage_dsr_received_total",
                "Data-subject requests received, by type.",
                &["type"],
            ),
            exports_downloaded: b.counter(
                "moonengage_exports_downloaded_total",
                "Exports downloaded by the person they are about.",
                &[],
            ),
            dsr_completed: b.counter(
                "moonengage_dsr_completed_total",
                "Data-subject requests carried out, by type.",
                &["type"],
            ),
            dsr_open: b.gauge(
                "moonengage_dsr_open",
                "Data-subject requests received and not yet completed, by type.",
                &["type"],
            ),
            dsr_oldest_open: b.gauge(
                "moonengage_dsr_oldest_open_age_seconds",
                "Age of the oldest open data-subject request (0 when none); the deadline is 30 \
                 days.",
                &["type"],
            ),
            incident_deadline: b.gauge(
                "moonengage_incident_report_deadline_seconds",
                "Seconds left to inform the supervisory authority of the earliest open \
                 (unreported) incident, 72 hours after its detection; negative once missed, \
                 +Inf when no incident is open.",
                &[],
            ),
            registry: b.registry,
            names: b.names,
        }
    }

    /// Creates every series whose labels are known in advance, at 0.
    pub(super) fn touch_known_series(&self, queues: &[&str]) {
        for queue in queues {
            for outcome in JOB_OUTCOMES {
                self.job_executions.with_label_values(&[queue, outcome]);
                self.job_duration.with_label_values(&[queue, outcome]);
            }
            self.job_wait.with_label_values(&[queue]);
            self.job_retries.with_label_values(&[queue]);
            self.jobs_in_flight.with_label_values(&[queue]);
        }
        for kind in WEBHOOK_KINDS {
            for result in WEBHOOK_RESULTS {
                self.webhooks.with_label_values(&[kind, result]);
            }
        }
        for class in super::ACK_CLASSES {
            self.webhook_ack.with_label_values(&[class]);
        }
        for problem in WEBHOOK_PROBLEMS {
            self.webhook_malformed.with_label_values(&[problem]);
        }
        for how in OPT_INS {
            self.opt_ins.with_label_values(&[how]);
        }
        for channel in UNSUBSCRIBE_CHANNELS {
            self.unsubscribes.with_label_values(&[channel]);
        }
        self.exports_downloaded.with_label_values(&[] as &[&str]);
        for kind in DSR_TYPES {
            self.dsr_received.with_label_values(&[kind]);
            self.dsr_completed.with_label_values(&[kind]);
        }
    }
}
