//! `warren-mqtt-bench`: MQTT side by side, the same rumqttc client against each broker (Warren, and RabbitMQ with
//! `rabbitmq_mqtt`).
//!
//! Per target and per QoS (0, 1):
//! - publish: one publisher sends `--messages` messages of `--size` bytes to a topic no one subscribes to (at QoS 1
//!   each is acknowledged; up to `--inflight` await their PUBACK);
//! - fan-out: `--subscribers` clients subscribe to one topic, one publisher sends `--fanout-messages`, every
//!   subscriber receives each: deliveries per second, and the publish-to-delivery latency (p50, p99) from a
//!   timestamp in each payload.
//!
//! Usage: `warren-mqtt-bench --target warren=127.0.0.1:1883 --target rabbitmq=127.0.0.1:1884` (see
//! `scripts/bench-mqtt`, which starts both brokers).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// NAME=HOST:PORT, repeatable.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    #[arg(long, default_value_t = 2_000)]
    fanout_messages: u64,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// QoS 1 publishes awaiting their PUBACK at once.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    #[arg(long, default_value = "guest")]
    user: String,
    #[arg(long, default_value = "guest")]
    password: String,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn client(args: &Args, addr: &str, id: &str, inflight: u16) -> (AsyncClient, EventLoop) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "1883"));
    let mut o = MqttOptions::new(id, host, port.parse().unwrap_or(1883));
    o.set_credentials(args.user.clone(), args.password.clone());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(inflight);
    o.set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(o, usize::from(inflight).max(10) * 2)
}

fn payload(size: usize) -> Vec<u8> {
    let mut p = now_ns().to_be_bytes().to_vec();
    p.resize(size.max(8), b'x');
    p
}

/// One publisher, no subscribers: messages per second.
async fn publish_only(args: &Args, addr: &str, qos: QoS, run: &str) -> f64 {
    let (c, mut events) = client(args, addr, &format!("pub-{run}"), args.inflight);
    let total = args.messages;
    let topic = format!("bench/pub/{run}");
    let started = Instant::now();
    let sender = {
        let (c, topic, size) = (c.clone(), topic.clone(), args.size);
        tokio::spawn(async move {
            for _ in 0..total {
                if c.publish(&topic, qos, false, payload(size)).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut acked = 0u64;
    let mut written = 0u64;
    while (qos == QoS::AtMostOnce && written < total) || (qos != QoS::AtMostOnce && acked < total) {
        match events.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => written += 1,
            Ok(_) => {}
            Err(e) => {
                eprintln!("publish: {e}");
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = sender.await;
    let _ = c.disconnect().await;
    total as f64 / secs
}

/// `subscribers` clients on one topic, one publisher: deliveries per second and latency percentiles (ms).
async fn fan_out(args: &Args, addr: &str, qos: QoS, run: &str) -> (f64, f64, f64) {
    let topic = format!("bench/fan/{run}");
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!())));
    let want = args.fanout_messages;
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let (c, mut events) = client(args, addr, &format!("sub-{run}-{i}"), 100);
        if c.subscribe(&topic, qos).await.is_err() {
            continue;
        }
        // Until subscribed.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("subscribe: {e}"),
            }
        }
        let hist = hist.clone();
        subs.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut local = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
            while got < want {
                match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        got += 1;
                        if let Some(ts) = p.payload.get(..8) {
                            let sent = u64::from_be_bytes(ts.try_into().unwrap_or([0; 8]));
                            let _ = local.record(now_ns().saturating_sub(sent) / 1000);
                        }
                    }
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            let _ = hist.lock().await.add(&local);
            let _ = c.disconnect().await;
            got
        }));
    }
    let (p, mut events) = client(args, addr, &format!("fanpub-{run}"), args.inflight);
    let started = Instant::now();
    let size = args.size;
    let publisher = {
        let (p, topic) = (p.clone(), topic.clone());
        tokio::spawn(async move {
            for _ in 0..want {
                if p.publish(&topic, qos, false, payload(size)).await.is_err() {
                    break;
                }
            }
        })
    };
    let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let mut delivered = 0u64;
    for s in subs {
        delivered += s.await.unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = publisher.await;
    let _ = p.disconnect().await;
    pump.abort();
    let h = hist.lock().await;
    (
        delivered as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let targets: Vec<(String, String)> = args
        .targets
        .iter()
        .filter_map(|t| t.split_once('=').map(|(n, a)| (n.to_string(), a.to_string())))
        .collect();
    println!(
        "{} msgs of {} B published; fan-out: {} msgs to {} subscribers",
        args.messages, args.size, args.fanout_messages, args.subscribers
    );
    let mut rows: Vec<(String, String, f64, f64, f64, f64)> = Vec::new();
    for (qos, q) in [(QoS::AtMostOnce, "0"), (QoS::AtLeastOnce, "1")] {
        for (name, addr) in &targets {
            let run = format!("{name}-{q}-{}", now_ns() % 1_000_000);
            let publish = publish_only(&args, addr, qos, &run).await;
            let (fan, p50, p99) = fan_out(&args, addr, qos, &run).await;
            println!(
                "QoS {q} {name:>10}: publish {publish:>10.0} msg/s   fan-out {fan:>10.0} deliveries/s   p50 {p50:>7.2} ms   p99 {p99:>7.2} ms"
            );
            rows.push((q.to_string(), name.clone(), publish, fan, p50, p99));
        }
    }
    if let [(first, _), rest @ ..] = &targets[..] {
        for (other, _) in rest {
            for q in ["0", "1"] {
                let find = |n: &str| rows.iter().find(|r| r.0 == q && r.1 == n);
                if let (Some(a), Some(b)) = (find(first), find(other)) {
                    println!(
                        "QoS {q} {first}/{other}: publish {:.2}x   fan-out {:.2}x   p99 {:.2}x (lower is better)",
                        a.2 / b.2,
                        a.3 / b.3,
                        a.5 / b.5
                    );
                }
            }
        }
    }
}
