//! A model's prices: each one from the config when set there, else from the built-in catalog
//! (matched by upstream name), else none. A remote model with neither is `unpriced` (a
//! startup warning; its requests are flagged, never silently $0). Local models must price
//! themselves explicitly (`load_local`).

use super::load::money;
use super::raw::RawModel;
use super::resolved::{Pricing, ProviderKind};
use crate::error::Result;
use crate::money::price;
use rust_decimal::Decimal;

pub(super) fn pricing(
    at: &dyn Fn(&str) -> String,
    m: &RawModel,
    provider: ProviderKind,
    upstream: &str,
) -> Result<Pricing> {
    let field = |key: &str, v: Option<&toml::Value>| -> Result<Option<Decimal>> {
        v.map(|v| money(&at(key), Some(v))).transpose()
    };
    let input = field("input_cost_per_mtok", m.input_cost_per_mtok.as_ref())?;
    let output = field("output_cost_per_mtok", m.output_cost_per_mtok.as_ref())?;
    let read = field(
        "cached_input_cost_per_mtok",
        m.cached_input_cost_per_mtok.as_ref(),
    )?;
    let write = field(
        "cache_write_cost_per_mtok",
        m.cache_write_cost_per_mtok.as_ref(),
    )?;
    let write_1h = field(
        "cache_write_1h_cost_per_mtok",
        m.cache_write_1h_cost_per_mtok.as_ref(),
    )?;
    let compute = field(
        "cost_per_compute_second",
        m.cost_per_compute_second.as_ref(),
    )?;
    let configured = [input, output, read, write, write_1h, compute]
        .iter()
        .any(Option::is_some);
    let listed = match provider {
        ProviderKind::Local => None,
        _ => price::lookup(upstream).or_else(|| price::lookup(&m.name)),
    };
    let version = match (configured, listed) {
        (_, None) if provider == ProviderKind::Local => "config".to_owned(),
        (true, None) if input.is_some() && output.is_some() || compute.is_some() => {
            "config".to_owned()
        }
        (false, Some(p)) => format!("catalog:{}", p.as_of),
        (true, Some(p)) => format!("config+catalog:{}", p.as_of),
        // Some prices but not both token prices: half a price is no price.
        (_, None) => Pricing::UNPRICED.to_owned(),
    };
    let input = input.or(listed.map(|p| p.input)).unwrap_or_default();
    let cache_write = write
        .or(listed.and_then(|p| p.cache_write))
        .unwrap_or(input);
    Ok(Pricing {
        input_per_mtok: input,
        output_per_mtok: output.or(listed.map(|p| p.output)).unwrap_or_default(),
        cached_input_per_mtok: read
            .or(listed.and_then(|p| p.cached_input))
            .unwrap_or(input),
        cache_write_per_mtok: cache_write,
        // Anthropic's one-hour cache writes cost twice the input price (other providers have
        // none: there it is the plain write price, which no estimate then exceeds).
        cache_write_1h_per_mtok: write_1h.unwrap_or(match provider {
            ProviderKind::Anthropic => input * Decimal::TWO,
            _ => cache_write,
        }),
        per_compute_second: compute.unwrap_or_default(),
        version,
    })
}

/// The catalog's output limit of a remote model, if it lists one.
pub(super) fn catalog_output_limit(
    m: &RawModel,
    provider: ProviderKind,
    upstream: &str,
) -> Option<u32> {
    match provider {
        ProviderKind::Local => None,
        _ => price::lookup(upstream)
            .or_else(|| price::lookup(&m.name))
            .and_then(|p| p.max_output),
    }
}
