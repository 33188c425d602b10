//! Usage -> cost, exactly: money is `Decimal`, prices are USD per million tokens. The one cost
//! function: the router's estimates, budget reservations and the ledger all price through it.

use crate::config::Pricing;
use llmrr_types::openai::Usage;
use rust_decimal::Decimal;
use std::time::Duration;

const PER: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The cost in USD of `usage` (and of `compute` time, when priced) at `pricing`. Cached prompt
/// tokens are priced at the cache-read price, cache writes at the cache-write price (one-hour
/// writes at theirs), the rest
/// of the prompt at the input price; reasoning tokens are output (they are part of
/// `completion_tokens`).
pub fn cost_of(pricing: &Pricing, usage: &Usage, compute: Option<Duration>) -> Decimal {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    let written = usage
        .cache_creation_input_tokens
        .min(usage.prompt_tokens - cached);
    let plain = usage.prompt_tokens - cached - written;
    let written_1h = usage.cache_creation_1h_input_tokens.min(written);
    let tokens = (Decimal::from(plain) * pricing.input_per_mtok
        + Decimal::from(cached) * pricing.cached_input_per_mtok
        + Decimal::from(written - written_1h) * pricing.cache_write_per_mtok
        + Decimal::from(written_1h) * pricing.cache_write_1h_per_mtok
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

/// The estimate of a call before it runs: `prompt` tokens at the input price and `output`
/// tokens at the output price (no cache discount is assumed).
pub fn estimate(pricing: &Pricing, prompt: u64, output: u64) -> Decimal {
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: output,
        total_tokens: prompt + output,
        ..Usage::default()
    };
    cost_of(pricing, &usage, None)
}

/// The most a call can cost: every prompt token at the dearest prompt price (a cache write
/// can cost more than plain input), `max_output` tokens, `choices` times over, plus `compute`
/// time at the compute price (local models).
pub fn most(
    pricing: &Pricing,
    prompt: u64,
    max_output: u64,
    choices: u64,
    compute: Duration,
) -> Decimal {
    let prompt_price = pricing
        .input_per_mtok
        .max(pricing.cache_write_per_mtok)
        .max(pricing.cache_write_1h_per_mtok);
    let tokens = (Decimal::from(prompt) * prompt_price
        + Decimal::from(max_output) * pricing.output_per_mtok * Decimal::from(choices.max(1)))
        / PER;
    tokens + Decimal::new(compute.as_micros() as i64, 6) * pricing.per_compute_second
}

/// USD as whole pico-USD (the ledger's unit), rounded to the nearest.
pub fn picos(usd: Decimal) -> i64 {
    usd.checked_mul(Decimal::from(crate::store::PICOS_PER_USD))
        .and_then(|p| p.round().try_into().ok())
        .unwrap_or(i64::MAX)
}

/// Pico-USD as USD, exactly.
pub fn usd_of_picos(picos: i64) -> Decimal {
    Decimal::new(picos, 12).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrr_types::openai::{CompletionTokensDetails, PromptTokensDetails};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn priced(input: &str, output: &str, read: &str, write: &str) -> Pricing {
        Pricing {
            input_per_mtok: d(input),
            output_per_mtok: d(output),
            cached_input_per_mtok: d(read),
            cache_write_per_mtok: d(write),
            cache_write_1h_per_mtok: d(input) * Decimal::TWO,
            per_compute_second: Decimal::ZERO,
            version: "config".into(),
        }
    }

    #[test]
    fn exact_to_the_fraction_of_a_cent() {
        let p = priced("0.15", "0.60", "0.075", "0.15");
        let u = Usage {
            prompt_tokens: 1234,
            completion_tokens: 567,
            total_tokens: 1801,
            ..Usage::default()
        };
        // 1234 * 0.15 / 1e6 + 567 * 0.60 / 1e6 = 0.0001851 + 0.0003402
        assert_eq!(
            cost_of(&p, &u, Some(Duration::from_secs(3))),
            d("0.0005253")
        );
        assert_eq!(cost_of(&Pricing::default(), &u, None), Decimal::ZERO);
        let per_second = Pricing {
            per_compute_second: d("0.002"),
            ..p
        };
        // + 1.5 s at 0.002 USD/s
        assert_eq!(
            cost_of(&per_second, &u, Some(Duration::from_millis(1500))),
            d("0.0035253")
        );
    }

    #[test]
    fn cached_reads_and_writes_at_their_own_prices_reasoning_as_output() {
        // Anthropic Sonnet: 3 in, 15 out, 0.30 read, 3.75 write.
        let p = priced("3", "15", "0.30", "3.75");
        let u = Usage {
            prompt_tokens: 10_000,
            completion_tokens: 1_000,
            total_tokens: 11_000,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: 6_000,
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: 400,
            }),
            cache_creation_input_tokens: 3_000,
            cache_creation_1h_input_tokens: 0,
        };
        // 1000*3 + 6000*0.30 + 3000*3.75 + 1000*15 = 3000 + 1800 + 11250 + 15000 = 31050 / 1e6
        assert_eq!(cost_of(&p, &u, None), d("0.03105"));
        // 1000 of the writes for an hour, at twice the input price:
        // 1000*3 + 6000*0.30 + 2000*3.75 + 1000*6 + 1000*15 = 33300 / 1e6
        let hour = Usage {
            cache_creation_1h_input_tokens: 1_000,
            ..u
        };
        assert_eq!(cost_of(&p, &hour, None), d("0.0333"));
        // Details larger than the prompt never price negative tokens.
        let odd = Usage {
            prompt_tokens: 10,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 50 }),
            cache_creation_input_tokens: 50,
            ..Usage::default()
        };
        assert_eq!(cost_of(&p, &odd, None), d("0.000003"));
    }

    #[test]
    fn the_most_a_call_can_cost_bounds_every_real_cost() {
        let p = priced("3", "15", "0.30", "3.75");
        // 100 prompt tokens at 6 (the dearest: a one-hour cache write) + 2 choices * 50 * 15
        assert_eq!(most(&p, 100, 50, 2, Duration::ZERO), d("0.0021"));
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 100,
            cache_creation_input_tokens: 100,
            ..Usage::default()
        };
        assert!(cost_of(&p, &u, None) <= most(&p, 100, 50, 2, Duration::ZERO));
        assert_eq!(estimate(&p, 1000, 100), d("0.0045"));
        assert_eq!(picos(d("0.0000375")), 37_500_000);
        assert_eq!(usd_of_picos(37_500_000), d("0.0000375"));
    }
}
