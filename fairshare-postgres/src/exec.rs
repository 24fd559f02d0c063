//! # Implementation details
//!
//! Runs a statement either from its text (`query_typed`: one round trip, parsed and planned
//! by the server every time) or as a statement prepared once per connection (parsed once,
//! its plan cached). The plain [`Queue`](crate::Queue) methods work on any client the host
//! passes, so they use the text; a [`Session`](crate::Session) owns its connection and
//! prepares the hot statements once.

use std::future::Future;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error as PgError, GenericClient, Row, Statement};

use crate::sql::Sql;

pub(crate) type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// The hot statements, prepared on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) lock_tenant: Statement,
    pub(crate) insert_tenant: Statement,
    pub(crate) insert_jobs: Statement,
    pub(crate) insert_jobs_uniform: Statement,
    pub(crate) claim: Statement,
    pub(crate) reap: Statement,
    pub(crate) complete: Statement,
    pub(crate) tenant_for_update: Statement,
    pub(crate) update_tenant_pass: Statement,
    pub(crate) fail: Statement,
    pub(crate) release: Statement,
    pub(crate) extend: Statement,
}

impl Prepared {
    pub(crate) async fn new<C: GenericClient + Sync>(c: &C, sql: &Sql) -> Result<Self, PgError> {
        use Type as T;
        Ok(Prepared {
            lock_tenant: c.prepare_typed(&sql.lock_tenant, &[T::TEXT]).await?,
            insert_tenant: c
                .prepare_typed(&sql.insert_tenant, &[T::TEXT, T::INT8])
                .await?,
            insert_jobs: c
                .prepare_typed(
                    &sql.insert_jobs,
                    &[
                        T::TEXT,
                        T::INT8,
                        T::INT8,
                        T::INT8,
                        T::TEXT_ARRAY,
                        T::INT8_ARRAY,
                        T::INT8_ARRAY,
                        T::BYTEA_ARRAY,
                        T::INT4_ARRAY,
                        T::INT8_ARRAY,
                    ],
                )
                .await?,
            insert_jobs_uniform: c
                .prepare_typed(
                    &sql.insert_jobs_uniform,
                    &[
                        T::TEXT,
                        T::INT8,
                        T::INT8,
                        T::INT8,
                        T::TEXT,
                        T::INT8,
                        T::INT4,
                        T::INT8,
                        T::INT8_ARRAY,
                        T::BYTEA_ARRAY,
                    ],
                )
                .await?,
            claim: c
                .prepare_typed(&sql.claim, &[T::TEXT, T::INT8, T::INT8])
                .await?,
            reap: c.prepare_typed(&sql.reap, &[T::INT8]).await?,
            complete: c.prepare_typed(&sql.complete, &[T::INT8, T::INT8]).await?,
            tenant_for_update: c.prepare_typed(&sql.tenant_for_update, &[T::TEXT]).await?,
            update_tenant_pass: c
                .prepare_typed(&sql.update_tenant_pass, &[T::TEXT, T::INT8, T::INT8])
                .await?,
            fail: c
                .prepare_typed(&sql.fail, &[T::INT8, T::INT8, T::TEXT, T::INT8, T::TEXT])
                .await?,
            release: c.prepare_typed(&sql.release, &[T::INT8, T::INT8]).await?,
            extend: c
                .prepare_typed(&sql.extend, &[T::INT8, T::INT8, T::INT8])
                .await?,
        })
    }
}

fn refs<'a>(params: &'a Params<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// Runs a statement prepared (if given) or from its text.
pub(crate) trait Exec: GenericClient + Sync {
    fn run_query<'a>(
        &'a self,
        prep: Option<&'a Statement>,
        text: &'a str,
        params: &'a Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, PgError>> + Send + 'a {
        async move {
            match prep {
                Some(st) => self.query(st, &refs(params)).await,
                None => self.query_typed(text, params).await,
            }
        }
    }

    fn run_opt<'a>(
        &'a self,
        prep: Option<&'a Statement>,
        text: &'a str,
        params: &'a Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, PgError>> + Send + 'a {
        async move {
            match prep {
                Some(st) => self.query_opt(st, &refs(params)).await,
                None => self.query_typed_opt(text, params).await,
            }
        }
    }

    fn run_one<'a>(
        &'a self,
        prep: Option<&'a Statement>,
        text: &'a str,
        params: &'a Params<'a>,
    ) -> impl Future<Output = Result<Row, PgError>> + Send + 'a {
        async move {
            match prep {
                Some(st) => self.query_one(st, &refs(params)).await,
                None => self.query_typed_one(text, params).await,
            }
        }
    }

    fn run_execute<'a>(
        &'a self,
        prep: Option<&'a Statement>,
        text: &'a str,
        params: &'a Params<'a>,
    ) -> impl Future<Output = Result<u64, PgError>> + Send + 'a {
        async move {
            match prep {
                Some(st) => self.execute(st, &refs(params)).await,
                None => self.execute_typed(text, params).await,
            }
        }
    }
}

impl<C: GenericClient + Sync> Exec for C {}
