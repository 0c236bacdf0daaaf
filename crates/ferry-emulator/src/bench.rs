//! Micro-benchmark of the GraphQL half (start-up, introspection latency, queries/s).
