//! Kubernetes resource quantities (`500m`, `1.5`, `256Mi`, `1G`, `1e3`) converted to the integer
//! units Docker wants: nano CPUs and bytes. Pure and exact (integer arithmetic, no floats);
//! every failure is a [`QuantityError`] value, never a panic.
//!
//! Rounding follows Kubernetes' `Value()`/`MilliValue()`: a fraction of the target unit rounds
//! up, so `0.5` bytes is 1 byte and `1.0000000001` CPUs is 1000000001 nano CPUs.

/// Why a quantity could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {problem}")]
pub struct QuantityError {
    /// The quantity as written.
    pub input: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Nano CPUs (`1e-9` CPUs, Docker's `NanoCpus`) of a CPU quantity: `500m` → 500000000,
/// `1.5` → 1500000000, `2` → 2000000000.
pub fn parse_cpu(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 9)
}

/// Bytes of a memory quantity: `256Mi` → 268435456, `1G` → 1000000000, `1024` → 1024.
pub fn parse_memory(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 0)
}

/// More significant digits than any real quantity has; bounds the arithmetic below.
const MAX_DIGITS: usize = 30;
/// Exponents beyond this are certainly out of range (or round to the smallest unit).
const MAX_EXPONENT: i64 = 60;

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`.
struct Parsed {
    mantissa: u128,
    exp10: i64,
    exp2: u32,
}

/// The value of `input` in units of `10^-unit_exp10`, rounded up to an integer.
fn parse_scaled(input: &str, unit_exp10: i64) -> Result<i64, QuantityError> {
    let err = |problem| QuantityError {
        input: input.to_string(),
        problem,
    };
    let parsed = parse(input).map_err(err)?;
    if parsed.mantissa == 0 {
        return Ok(0);
    }
    let exp10 = parsed.exp10 + unit_exp10;
    let too_large = || err("too large");
    // numerator = mantissa × 2^exp2 × 10^max(exp10, 0); denominator = 10^max(-exp10, 0)
    let mut numerator = parsed
        .mantissa
        .checked_mul(1u128.checked_shl(parsed.exp2).ok_or_else(too_large)?)
        .ok_or_else(too_large)?;
    if exp10 >= 0 {
        let factor = pow10(exp10).ok_or_else(too_large)?;
        numerator = numerator.checked_mul(factor).ok_or_else(too_large)?;
        i64::try_from(numerator).map_err(|_| too_large())
    } else {
        let value = match pow10(-exp10) {
            // ceil(numerator / divisor) without overflow
            Some(divisor) => numerator / divisor + u128::from(numerator % divisor != 0),
            // The divisor exceeds any numerator: a positive value smaller than one unit.
            None => 1,
        };
        i64::try_from(value).map_err(|_| too_large())
    }
}

fn pow10(exp: i64) -> Option<u128> {
    let exp = u32::try_from(exp).ok()?;
    10u128.checked_pow(exp)
}

/// Parses Kubernetes' quantity grammar: `[+-]? (digits[.digits] | .digits) [suffix]`, where the
/// suffix is binary (`Ki`..`Ei`), decimal (`n u m k M G T P E`) or an exponent (`e3`, `E-2`).
fn parse(input: &str) -> Result<Parsed, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty");
    }
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = s.split_at(number_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') {
        return Err("more than one decimal point");
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("expected a number, e.g. 500m, 1.5, 256Mi or 1G");
    }
    let (exp10, exp2) = parse_suffix(suffix)?;
    if negative {
        // Zero is the only non-positive value we accept; "-0" is harmless.
        if int_part.bytes().chain(frac_part.bytes()).any(|b| b != b'0') {
            return Err("must not be negative");
        }
    }
    let digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let significant = digits.trim_start_matches('0');
    // Trailing zeros of the fraction carry no value; dropping them keeps long inputs such
    // as `1.000000000000000000000000000000000` within MAX_DIGITS.
    let frac_trimmed = frac_part.trim_end_matches('0');
    let dropped = frac_part.len() - frac_trimmed.len();
    let significant = &significant[..significant.len().saturating_sub(dropped)];
    if significant.len() > MAX_DIGITS {
        return Err("too many digits");
    }
    let mantissa = if significant.is_empty() {
        0
    } else {
        significant.parse::<u128>().map_err(|_| "too many digits")?
    };
    let frac_len = i64::try_from(frac_trimmed.len()).map_err(|_| "too many digits")?;
    Ok(Parsed {
        mantissa,
        exp10: exp10 - frac_len,
        exp2,
    })
}

/// `(power of ten, power of two)` of a suffix.
fn parse_suffix(suffix: &str) -> Result<(i64, u32), &'static str> {
    let known = match suffix {
        "" => Some((0, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        _ => None,
    };
    if let Some(k) = known {
        return Ok(k);
    }
    let exponent = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
        .ok_or("unknown suffix; expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3")?;
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid exponent");
    }
    // Keep only the last few digits' worth of magnitude: anything longer is out of range.
    if digits.trim_start_matches('0').len() > 4 {
        return Err("exponent out of range");
    }
    let value: i64 = exponent.parse().map_err(|_| "invalid exponent")?;
    if value.abs() > MAX_EXPONENT {
        return Err("exponent out of range");
    }
    Ok((value, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        let cases = [
            ("500m", 500_000_000),
            ("1.5", 1_500_000_000),
            ("1", 1_000_000_000),
            ("2", 2_000_000_000),
            ("0.1", 100_000_000),
            (".5", 500_000_000),
            ("1.", 1_000_000_000),
            ("250000u", 250_000_000),
            ("10n", 10),
            ("1e-3", 1_000_000),
            ("1E2", 100_000_000_000),
            ("+1", 1_000_000_000),
            ("0", 0),
            ("-0", 0),
            ("1.0000000001", 1_000_000_001),
            ("0.0000000001", 1),
            ("1.000000000000000000000000000000000000", 1_000_000_000),
            (" 2 ", 2_000_000_000),
        ];
        for (input, want) in cases {
            assert_eq!(parse_cpu(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases = [
            ("256Mi", 268_435_456),
            ("1G", 1_000_000_000),
            ("1024", 1024),
            ("1Ki", 1024),
            ("1.5Gi", 1_610_612_736),
            ("0.5", 1),
            ("64Mi", 67_108_864),
            ("1k", 1000),
            ("1e3", 1000),
            ("1Ei", 1_152_921_504_606_846_976),
            ("7Ei", 8_070_450_532_247_928_832),
            ("100m", 1),
        ];
        for (input, want) in cases {
            assert_eq!(parse_memory(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn invalid_quantities() {
        let cases = [
            ("", "empty"),
            ("  ", "empty"),
            ("abc", "expected a number, e.g. 500m, 1.5, 256Mi or 1G"),
            ("Mi", "expected a number, e.g. 500m, 1.5, 256Mi or 1G"),
            ("1.2.3", "more than one decimal point"),
            ("-1", "must not be negative"),
            ("-1Mi", "must not be negative"),
            ("1MB", "unknown suffix; expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3"),
            ("1ki", "unknown suffix; expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3"),
            ("1e", "invalid exponent"),
            ("1e+", "invalid exponent"),
            ("1e1.5", "invalid exponent"),
            ("1e99999", "exponent out of range"),
            ("1e61", "exponent out of range"),
            ("8Ei", "too large"),
            ("1e19", "too large"),
            ("1234567890123456789012345678901", "too many digits"),
        ];
        for (input, problem) in cases {
            let got = parse_memory(input);
            assert_eq!(
                got,
                Err(QuantityError {
                    input: input.to_string(),
                    problem
                }),
                "{input}"
            );
        }
        assert_eq!(parse_cpu("1e10").map_err(|e| e.problem), Err("too large"));
        assert_eq!(
            parse_cpu("9223372037").map_err(|e| e.problem),
            Err("too large")
        );
    }

    #[test]
    fn error_message_names_input() {
        let e = parse_cpu("lots").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid quantity \"lots\": expected a number, e.g. 500m, 1.5, 256Mi or 1G"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_cpu(&s);
            let _ = parse_memory(&s);
        }

        #[test]
        fn integers_are_exact(n in 0i64..=9_223_372_036) {
            proptest::prop_assert_eq!(parse_memory(&n.to_string()), Ok(n));
            proptest::prop_assert_eq!(parse_cpu(&format!("{n}n")), Ok(n));
            proptest::prop_assert_eq!(parse_cpu(&format!("{n}m")), Ok(n * 1_000_000));
        }
    }
}
