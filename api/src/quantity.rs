//! Kubernetes resource quantities: `cpu` in millicores (`500m`, `2`), `memory` in bytes (`64Mi`, `1G`).

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid quantity {value:?} for {resource}: {why} (examples: cpu \"250m\" or \"2\", memory \"64Mi\" or \"1Gi\")")]
pub struct QuantityError {
    pub resource: String,
    pub value: String,
    pub why: &'static str,
}

/// Parses `value` into base units: millicores for `cpu`, bytes (or a plain count) otherwise.
pub fn parse(resource: &str, value: &str) -> Result<u64, QuantityError> {
    let err = |why| QuantityError {
        resource: resource.to_string(),
        value: value.to_string(),
        why,
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    if num.is_empty() {
        return Err(err("it must start with a number"));
    }
    let n: f64 = num.parse().map_err(|_| err("the number is malformed"))?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        _ => return Err(err("unknown suffix")),
    };
    let base = if resource == "cpu" { 1000.0 } else { 1.0 };
    let out = n * multiplier * base;
    if !out.is_finite() || out > u64::MAX as f64 {
        return Err(err("it is too large"));
    }
    Ok(out.round() as u64)
}

/// Renders base units back as a readable quantity.
pub fn format(resource: &str, base_units: u64) -> String {
    if resource == "cpu" {
        if base_units.is_multiple_of(1000) {
            return (base_units / 1000).to_string();
        }
        return format!("{base_units}m");
    }
    const UNITS: [(&str, u64); 3] = [("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (suffix, size) in UNITS {
        if base_units >= size && base_units.is_multiple_of(size) {
            return format!("{}{suffix}", base_units / size);
        }
    }
    base_units.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(parse("cpu", "250m"), Ok(250));
        assert_eq!(parse("cpu", "2"), Ok(2000));
        assert_eq!(parse("cpu", "0.5"), Ok(500));
        assert_eq!(parse("memory", "64Mi"), Ok(64 << 20));
        assert_eq!(parse("memory", "1G"), Ok(1_000_000_000));
        assert_eq!(parse("memory", "1024"), Ok(1024));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse("memory", "lots")
            .unwrap_err()
            .to_string()
            .contains("must start with a number"));
        assert!(parse("memory", "5Qi")
            .unwrap_err()
            .to_string()
            .contains("unknown suffix"));
        assert!(parse("cpu", "1.2.3").is_err());
    }

    #[test]
    fn formats_round_numbers() {
        assert_eq!(format("memory", 64 << 20), "64Mi");
        assert_eq!(format("cpu", 1500), "1500m");
        assert_eq!(format("cpu", 2000), "2");
    }
}
