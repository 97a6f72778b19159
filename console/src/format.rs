//! Pure text formatting shared by the views: counts with separators, rates, durations, clock times, byte sizes, and
//! URL path segments. Nothing here reads a clock: callers pass "now".

/// `1234567` -> `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A per-second rate, short: `0`, `3.5`, `120`, `12.3k`.
pub fn rate(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        "0".into()
    } else if r < 10.0 {
        let s = format!("{r:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else if r < 10_000.0 {
        format!("{r:.0}")
    } else if r < 10_000_000.0 {
        format!("{:.1}k", r / 1000.0)
    } else {
        format!("{:.1}M", r / 1_000_000.0)
    }
}

/// A duration, short: `0ms`, `850ms`, `4.2s`, `3m04s`, `2h05m`, `3d04h`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Whole seconds, for ages and uptimes: `42s`, `3m04s`, `2h05m`, `3d04h`.
pub fn age_ms(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        duration_ms(ms)
    }
}

/// The wall-clock time of `unix_ms` as `HH:MM:SS`, shifted by the local UTC offset.
pub fn clock(unix_ms: u64, utc_offset_s: i32) -> String {
    let secs = (unix_ms / 1000) as i64 + utc_offset_s as i64;
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, (day % 3600) / 60, day % 60)
}

/// The date and wall-clock time of `unix_ms` as `YYYY-MM-DD HH:MM:SS`, shifted by the local UTC offset.
pub fn date_time(unix_ms: u64, utc_offset_s: i32) -> String {
    let local_ms = unix_ms as i64 + utc_offset_s as i64 * 1000;
    chrono::DateTime::from_timestamp_millis(local_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| clock(unix_ms, utc_offset_s))
}

/// `512B`, `1.5KiB`, `3.2MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1}{unit}")
}

/// Percent-encodes one URL path segment (so vhost `/` becomes `%2F`).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A one-line sparkline of `values` scaled to their maximum, `width` cells wide (the newest on the right).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().cloned().fold(0.0_f64, f64::max);
    let mut out: String = " ".repeat(width - tail.len());
    for v in tail {
        if max <= 0.0 || *v <= 0.0 {
            out.push(' ');
        } else {
            let i = ((v / max) * 7.0).round() as usize;
            out.push(BARS[i.min(7)]);
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(3.0), "3");
        assert_eq!(rate(3.46), "3.5");
        assert_eq!(rate(120.4), "120");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(4200), "4.2s");
        assert_eq!(duration_ms(184_000), "3m04s");
        assert_eq!(age_ms(42_500), "42s");
        assert_eq!(clock(3_723_000, 0), "01:02:03");
        assert_eq!(clock(3_723_000, 3600), "02:02:03");
        assert_eq!(clock(0, -3600), "23:00:00");
        assert_eq!(date_time(1_700_000_000_000, 3600), "2023-11-14 23:13:20");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(path_segment("/"), "%2F");
        assert_eq!(path_segment("orders.dlq"), "orders.dlq");
        assert_eq!(path_segment("a b"), "a%20b");
        assert_eq!(sparkline(&[0.0, 1.0, 2.0], 5), "   ▅█");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
