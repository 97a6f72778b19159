//! Out of file descriptors: the accept loops back off (no busy loop) and serve again once descriptors are free.
//!
//! A test binary of its own: it lowers this process's open-file limit, which would break tests running beside it.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rlimit::Resource;
use warren_tests::http::request;
use warren_tests::raw::RawClient;
use warren_tests::TestBroker;

/// User plus system CPU time of this process so far, from `/proc/self/stat` (fields 14 and 15, in clock ticks of
/// 10 ms). Read with a descriptor opened before the limit is lowered.
fn cpu_time(stat: &mut std::fs::File) -> Duration {
    use std::io::{Read, Seek};
    let mut text = String::new();
    stat.rewind().expect("rewind");
    stat.read_to_string(&mut text).expect("stat");
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = after_name.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

#[test]
fn accept_survives_emfile_without_spinning() {
    let broker = TestBroker::start_with(|c| c.admin_idle_timeout = Duration::from_secs(1));
    let admin = broker.admin_addr;
    // The broker's runtime is up (it needs descriptors of its own to start).
    assert_eq!(request(admin, "GET", "/api/overview", "guest:guest", "").0, 200);
    let mut stat = std::fs::File::open("/proc/self/stat").expect("stat");
    let (soft, hard) = Resource::NOFILE.get().expect("getrlimit");

    // Fill every free descriptor number up to the highest in use, then allow exactly those: the process is full.
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .expect("some fd");
    let mut fillers = Vec::new();
    loop {
        let f = std::fs::File::open("/dev/null").expect("filler");
        let fd = f.as_raw_fd();
        fillers.push(f);
        if fd > highest {
            break;
        }
    }
    let top = fillers.last().map(|f| f.as_raw_fd()).expect("a filler");
    Resource::NOFILE.set(top as u64 + 1, hard).expect("lower the limit");
    // One descriptor free: the client's socket takes it; the server's accept of that connection then fails (EMFILE).
    fillers.pop();
    let client = TcpStream::connect(admin).expect("connect with the last descriptor");
    std::thread::sleep(Duration::from_millis(100));
    let cpu_before = cpu_time(&mut stat);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    let cpu = cpu_time(&mut stat).saturating_sub(cpu_before);
    let wall = t0.elapsed();

    drop(client);
    drop(fillers);
    Resource::NOFILE.set(soft, hard).expect("restore the limit");
    assert!(
        cpu < wall / 3,
        "the accept loop spun while out of descriptors: {cpu:?} of CPU in {wall:?}"
    );
    let (s, _) = request(admin, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(s, 200, "the admin API serves again");
    let _amqp = RawClient::handshake(broker.addr, 0);
}
