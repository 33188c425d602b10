//! Configuration in two stages: [`raw`] is the TOML file as written (serde, unknown keys
//! rejected), [`resolved`] is what the program runs on (addresses parsed, durations, money as
//! `Decimal`, secrets read from the environment, defaults filled, cross-checks done). Every
//! error names the key path and the bad value. The environment is read once, here.

pub mod cache;
mod defaults;
pub mod guardrails;
pub mod limits;
mod load;
mod load_local;
mod load_price;
mod load_routing;
pub mod money;
mod raw;
mod resolved;
pub mod routing;
pub mod telemetry;

pub use defaults::{ANTHROPIC_MAX_TOKENS, LOCAL_PARALLEL, LOCAL_PREFILL_CHUNK};
pub use load::{load, ConfigSource, Env};
pub use money::{MoneyConfig, OutagePolicy, SharedConfig};
pub use resolved::{
    Capabilities, Config, HeaderValueSpec, KvType, LocalConfig, LocalModelSpec, MemoryBudget,
    ModelLimits, ModelSpec, Pooling, Pricing, ProviderKind, ServerConfig, StoreConfig,
};
pub use routing::{RouteSpec, RoutingConfig, StrategyKind};
pub use telemetry::{LogFormat, OtlpProtocol, TelemetryConfig};
