//! Every Kafka client dmpflow creates, configured by one recipe: a client's role defaults,
//! then what dmpflow derives from its settings, then the operator's `[kafka.client]` last,
//! with the keys dmpflow must control for correctness refused rather than overridden
//! ([`recipe`] says which and why). One constructor per role ([`clients`]): stage and
//! replay consumers, the tools' reader, a metadata client, the producers (stages, tools,
//! MLLP gateway, `dlq replay`'s transactional one) and the admin client. [`limits`] checks
//! that every record a process may write fits its producer and its topics.

mod clients;
mod context;
pub mod limits;
pub mod recipe;

pub use clients::{
    LastError, MetadataClient, admin, check_credentials, client_error, fetch_metadata,
    gateway_producer, group_consumer, metadata_client, producer, producer_with, reader,
    stage_consumer, stage_producer, transactional_producer,
};
pub use context::{StageConsumer, StageContext};
pub use recipe::{REFUSED, Role, client_config, config};
