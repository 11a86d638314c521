//! What the lab measures with and writes, apart from the app: the machine
//! a run happened on and its CPU readings ([`machine`]), result files
//! written whole or not at all ([`files`]), the load-test result file as
//! types both its writer and its readers use ([`schema`]), the tables every
//! report prints from result files ([`results`]) and the Universal
//! Scalability Law fitted over them ([`usl`]), and figures over repeated
//! runs with the differences between them ([`spread`]). The load generator, the
//! benchmarks and the dashboard all use it; the app (`minigram`) does not.

pub mod files;
pub mod machine;
pub mod results;
pub mod schema;
pub mod spread;
pub mod usl;
