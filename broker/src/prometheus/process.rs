//! The broker process's own figures that RabbitMQ's plugin exports and the alarms do not already sample: open file
//! descriptors and their limit. Read at each scrape (`/proc/self/fd` is one directory listing; with the default
//! cap of 10,000 connections that is at most a few thousand entries).

/// Open file descriptors of this process (sockets, segment files, the listening sockets), or `None` where
/// `/proc/self/fd` cannot be read.
pub fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle itself is one of the entries; it is not the broker's.
    Some((dir.count() as u64).saturating_sub(1))
}

/// The soft limit on open files (what `open` runs into), or `None` where it cannot be read.
pub fn max_fds() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let (open, max) = (super::open_fds(), super::max_fds());
        if let (Some(open), Some(max)) = (open, max) {
            assert!(open >= 3 && open <= max, "{open} of {max}");
        }
    }
}
