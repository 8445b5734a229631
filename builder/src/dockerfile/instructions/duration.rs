//! Go's `time.ParseDuration`, for HEALTHCHECK options.

use std::time::Duration;

fn invalid(orig: &str) -> String {
    format!("time: invalid duration {orig:?}")
}

/// Parse `1h2m3.5s`, `300ms`, `0`… into signed nanoseconds.
pub fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid(orig));
    }
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid(orig));
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u128 = 0;
        for &c in &b[..int_len] {
            v = v * 10 + u128::from(c - b'0');
            if v > limit {
                return Err(invalid(orig));
            }
        }
        s = &s[int_len..];
        let pre = int_len > 0;
        let mut frac: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            let fl = s.bytes().take_while(u8::is_ascii_digit).count();
            post = fl > 0;
            let mut overflow = false;
            for c in s[..fl].bytes() {
                if overflow {
                    continue;
                }
                if frac > (1u128 << 63) / 10 {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + u128::from(c - b'0');
                scale *= 10.0;
            }
            s = &s[fl..];
        }
        if !pre && !post {
            return Err(invalid(orig));
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let u = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u128 = match u {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {u:?} in duration {orig:?}")),
        };
        if v > limit / unit {
            return Err(invalid(orig));
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u128;
            if v > limit {
                return Err(invalid(orig));
            }
        }
        total += v;
        if total > limit {
            return Err(invalid(orig));
        }
    }
    if neg {
        return Ok(-(total as i128) as i64);
    }
    if total > limit - 1 {
        return Err(invalid(orig));
    }
    Ok(total as i64)
}

/// A non-negative Go duration as a [`Duration`].
pub fn to_duration(nanos: i64) -> Duration {
    Duration::from_nanos(nanos.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("100ms"), Ok(100_000_000));
        assert_eq!(parse_go_duration("-2us"), Ok(-2_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert!(parse_go_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_go_duration("5x")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_go_duration("abc")
            .unwrap_err()
            .contains("invalid duration"));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }
}
