//! Compose's units → dockwright's: durations (`1m30s`) → whole seconds, byte sizes (`512m`,
//! `1.5g`, `1024`) → Kubernetes quantities (`512Mi`, `1536Mi`, `1Ki`), CPU counts → CPU
//! quantities. Exact integer arithmetic; every failure is a message, never a panic.
//!
//! Compose's byte units are binary whatever their spelling (`m`, `mb`, `MiB` all mean 2^20),
//! as Docker's own parsers read them; so `512m` is `512Mi`, never `512M` (which Kubernetes
//! reads as 10^6) nor `512m` (which Kubernetes reads as 0.512 bytes).

/// A duration rounded up to whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds {
    /// Whole seconds (rounded up).
    pub seconds: u32,
    /// True when the duration was not a whole number of seconds.
    pub rounded: bool,
}

/// Parses a Go-style duration as Compose writes them: `30s`, `1m30s`, `1.5h`, `500ms`, `0`.
pub fn parse_duration(input: &str) -> Result<Seconds, String> {
    let bad = |why: &str| format!("invalid duration {input:?}: {why} (e.g. 30s, 1m30s, 500ms)");
    let s = input.trim();
    if s == "0" {
        return Ok(Seconds {
            seconds: 0,
            rounded: false,
        });
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let (mantissa, frac_digits) = decimal(&rest[..num_len]).ok_or_else(|| bad("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit; use ns, us, ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        let scale = 10u128.pow(frac_digits);
        let ns = mantissa
            .checked_mul(unit_ns)
            .map(|n| n.div_ceil(scale))
            .ok_or_else(|| bad("too large"))?;
        total_ns = total_ns.checked_add(ns).ok_or_else(|| bad("too large"))?;
    }
    let seconds = total_ns.div_ceil(1_000_000_000);
    Ok(Seconds {
        seconds: u32::try_from(seconds).map_err(|_| bad("too large"))?,
        rounded: !total_ns.is_multiple_of(1_000_000_000),
    })
}

/// `digits[.digits]` → (all digits as an integer, number of fraction digits).
fn decimal(s: &str) -> Option<(u128, u32)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if int.len() + frac.len() > 30 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mantissa = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((mantissa, u32::try_from(frac.len()).ok()?))
}

/// Bytes of a Compose byte size: an integer (bytes) or `<number><unit>` with a binary unit
/// `b k kb ki kib m mb mi mib g gb gi gib t tb ti tib` (any case). Fractions of a byte are
/// dropped, as Docker's parsers truncate.
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size {input:?}: {why} (e.g. 512m, 1g, 1048576)");
    let s = input.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (mantissa, frac_digits) = decimal(&s[..num_len]).ok_or_else(|| bad("expected a number"))?;
    let shift = match s[num_len..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(bad("unknown unit; use b, k, m, g or t")),
    };
    let bytes = mantissa
        .checked_mul(1u128 << shift)
        .ok_or_else(|| bad("too large"))?
        / 10u128.pow(frac_digits);
    u64::try_from(bytes)
        .ok()
        .filter(|b| i64::try_from(*b).is_ok())
        .ok_or_else(|| bad("too large"))
}

/// The shortest exact Kubernetes quantity for `bytes`: `536870912` → `512Mi`, `1000` → `1000`.
pub fn bytes_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    for (shift, suffix) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A Compose byte size as a quantity (`512m` → `512Mi`).
pub fn size_quantity(input: &str) -> Result<String, String> {
    parse_bytes(input).map(bytes_quantity)
}

/// A Compose CPU count (`0.5`, `2`, `"1.25"`) as a CPU quantity: the same decimal, checked.
pub fn cpu_quantity(input: &str) -> Result<String, String> {
    let s = input.trim();
    let bad = || format!("invalid CPU count {input:?}: expected a number such as 0.5 or 2");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    crate::quantity::parse_cpu(s).map_err(|_| bad())?;
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> (u32, bool) {
        let d = parse_duration(s).unwrap();
        (d.seconds, d.rounded)
    }

    #[test]
    fn durations() {
        assert_eq!(secs("30s"), (30, false));
        assert_eq!(secs("1m30s"), (90, false));
        assert_eq!(secs("1h"), (3600, false));
        assert_eq!(secs("1.5m"), (90, false));
        assert_eq!(secs("500ms"), (1, true));
        assert_eq!(secs("1s500ms"), (2, true));
        assert_eq!(secs("2000ms"), (2, false));
        assert_eq!(secs("100us"), (1, true));
        assert_eq!(secs("0"), (0, false));
        assert_eq!(secs("0s"), (0, false));
        for bad in ["", "10", "s", "10x", "1.2.3s", "999999999999h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("512m", "512Mi"),
            ("512M", "512Mi"),
            ("512mb", "512Mi"),
            ("512MiB", "512Mi"),
            ("1g", "1Gi"),
            ("1.5g", "1536Mi"),
            ("2048k", "2Mi"),
            ("1024", "1Ki"),
            ("1000", "1000"),
            ("100b", "100"),
            ("64M", "64Mi"),
            ("0", "0"),
        ];
        for (input, want) in cases {
            assert_eq!(size_quantity(input).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(parse_bytes("0.5k"), Ok(512));
        assert_eq!(parse_bytes("1.0001k"), Ok(1024));
        for bad in ["", "m", "12x", "1.2.3m", "-1m", "99999999999t"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(cpu_quantity("0.5").as_deref(), Ok("0.5"));
        assert_eq!(cpu_quantity("2").as_deref(), Ok("2"));
        for bad in ["", "1m", "-1", "1.2.3", "lots"] {
            assert!(cpu_quantity(bad).is_err(), "{bad}");
        }
    }
}
