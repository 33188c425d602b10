//! Usage -> cost, exactly: money is `Decimal`, prices are USD per million tokens.

use crate::config::Pricing;
use llmrr_types::openai::Usage;
use rust_decimal::Decimal;
use std::time::Duration;

const PER: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The cost in USD of `usage` (and of `compute` time, when priced) at `pricing`.
pub fn cost_of(pricing: &Pricing, usage: &Usage, compute: Option<Duration>) -> Decimal {
    let tokens = (Decimal::from(usage.prompt_tokens) * pricing.input_per_mtok
        + Decimal::from(usage.completion_tokens) * pricing.output_per_mtok)
        / PER;
    match compute {
        Some(d) if !pricing.per_compute_second.is_zero() => {
            // Microseconds, exactly.
            tokens + Decimal::new(d.as_micros() as i64, 6) * pricing.per_compute_second
        }
        _ => tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn exact_to_the_fraction_of_a_cent() {
        let p = Pricing {
            input_per_mtok: Decimal::from_str("0.15").expect("decimal"),
            output_per_mtok: Decimal::from_str("0.60").expect("decimal"),
            per_compute_second: Decimal::ZERO,
        };
        let u = Usage {
            prompt_tokens: 1234,
            completion_tokens: 567,
            total_tokens: 1801,
            prompt_tokens_details: None,
        };
        // 1234 * 0.15 / 1e6 + 567 * 0.60 / 1e6 = 0.0001851 + 0.0003402
        assert_eq!(
            cost_of(&p, &u, Some(Duration::from_secs(3))),
            Decimal::from_str("0.0005253").expect("decimal")
        );
        assert_eq!(cost_of(&Pricing::default(), &u, None), Decimal::ZERO);
        let per_second = Pricing {
            per_compute_second: Decimal::from_str("0.002").expect("decimal"),
            ..p
        };
        // + 1.5 s at 0.002 USD/s
        assert_eq!(
            cost_of(&per_second, &u, Some(Duration::from_millis(1500))),
            Decimal::from_str("0.0035253").expect("decimal")
        );
    }
}
