//! Journeys exported as OpenTelemetry spans (`--otlp-endpoint`), over OTLP/HTTP with protobuf bodies, by the
//! `opentelemetry-otlp` exporter (its blocking reqwest client: rustls with ring, no OpenSSL).
//!
//! Each recorded event becomes one span named `warren <kind>`, from the journey's previous event to this one (so
//! a trace viewer draws the journey as a timeline), with the message id, vhost and the event's details as
//! attributes. A message that carried a W3C `traceparent` has its spans in that trace, as children of the span that
//! published it; one without gets a trace id derived from (vhost, id), so all of its spans still share one trace.
//!
//! Invariants: the exporter, its HTTP client and the SDK's batch processor live on a thread of their own (the
//! blocking client must never be made or dropped on an async worker); the channel to it is bounded and a full one
//! drops the span (counted by the caller); a bad endpoint is logged once and exports nothing.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use sha2::{Digest, Sha256};
use warren_shared::trace::JourneyStep;

use super::ring::Parent;

/// Spans waiting for the exporter thread at most.
const QUEUED_SPANS: usize = 16_384;

/// How long the batch processor gathers spans before it exports them.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

/// One event to export.
pub struct SpanJob {
    pub vhost: String,
    pub key: String,
    pub traceparent: Parent,
    /// The journey's previous event (this event's own time for its first).
    pub started_ms: u64,
    pub step: JourneyStep,
}

pub struct Exporter {
    tx: SyncSender<SpanJob>,
}

impl Exporter {
    /// Starts the exporter thread for `endpoint` (a base URL such as `http://collector:4318`, or the full
    /// `.../v1/traces`).
    pub fn start(endpoint: &str) -> Self {
        let (tx, rx) = sync_channel(QUEUED_SPANS);
        let url = traces_url(endpoint);
        let spawned = std::thread::Builder::new()
            .name("warren-otlp".into())
            .spawn(move || run(&url, rx));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the OTLP exporter; journeys are not exported");
        }
        Exporter { tx }
    }

    /// Hands a span over; false when the exporter could not take it.
    pub fn send(&self, job: SpanJob) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

/// The OTLP/HTTP traces URL for an endpoint given as a base URL or in full.
pub fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{e}/v1/traces")
    }
}

fn run(url: &str, rx: Receiver<SpanJob>) {
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(endpoint = url, error = %e, "cannot export journeys over OTLP");
            // Drain so senders never see a full channel for long; nothing is exported.
            while rx.recv().is_ok() {}
            return;
        }
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(EXPORT_DELAY).build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("warren")
                .build(),
        )
        .build();
    let tracer = provider.tracer("warren-broker");
    while let Ok(job) = rx.recv() {
        export(&tracer, job);
    }
    if let Err(e) = provider.shutdown() {
        tracing::debug!(error = %e, "OTLP exporter shutdown");
    }
}

fn export(tracer: &impl Tracer, job: SpanJob) {
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    let mut attributes = vec![
        KeyValue::new("messaging.system", "rabbitmq"),
        KeyValue::new("messaging.message.id", job.key.clone()),
        KeyValue::new("warren.vhost", job.vhost.clone()),
        KeyValue::new("warren.event", job.step.event.kind()),
        KeyValue::new("warren.detail", job.step.event.summary()),
    ];
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&job.step.event) {
        for (k, v) in fields {
            if k != "kind" {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                attributes.push(KeyValue::new(format!("warren.{k}"), v));
            }
        }
    }
    let builder = tracer
        .span_builder(format!("warren {}", job.step.event.kind()))
        .with_kind(SpanKind::Internal)
        .with_start_time(at(job.started_ms.min(job.step.at_ms)))
        .with_attributes(attributes);
    let parent = job
        .traceparent
        .as_ref()
        .and_then(|(tp, ts)| parse_traceparent(tp, ts.as_deref()));
    let mut span = match parent {
        Some(sc) => builder.start_with_context(tracer, &Context::new().with_remote_span_context(sc)),
        None => builder
            .with_trace_id(derived_trace_id(&job.vhost, &job.key))
            .start_with_context(tracer, &Context::new()),
    };
    opentelemetry::trace::Span::end_with_timestamp(&mut span, at(job.step.at_ms).max(SystemTime::UNIX_EPOCH));
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`) as a remote span context; none when malformed.
pub fn parse_traceparent(tp: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = tp.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state))
}

/// The trace of a journey without a `traceparent`: the first 16 bytes of SHA-256 over (vhost, id).
pub fn derived_trace_id(vhost: &str, key: &str) -> TraceId {
    let mut h = Sha256::new();
    h.update(vhost.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    TraceId::from_bytes(b)
}
