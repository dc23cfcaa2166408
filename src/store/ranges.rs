//! Integrations by range, for the resync: a range is the integrations whose id ends in the same
//! two hex digits (random bits of a UUIDv7, so the 256 ranges are even). The resync compares each
//! range's digest with the token index and reloads only the ranges that differ.

use sea_orm::sea_query::{Expr, ExprTrait, Query, SimpleExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};

use crate::domain::error::Error;
use crate::store::error::{corrupt, db_error};
use crate::store::integrations::with_tokens;
use crate::store::{IntegrationTokens, Store, entity};

/// How many integrations with a current token one range holds, and the sum of their versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeDigest {
    pub range: u8,
    pub integrations: i64,
    pub versions: i64,
}

/// Returns the range of an integration: the last byte of its id, the last two hex digits of its
/// text (random bits in a UUIDv7, so ranges are even).
pub fn range_of(id: &uuid::Uuid) -> u8 {
    id.as_bytes()[15]
}

/// The range of an integration's row, in SQL: the last two hex digits of its id, as the
/// expression index and the triggers compute it.
fn range_expr() -> SimpleExpr {
    Expr::cust("substr(id, 35, 2)")
}

impl Store {
    /// Returns, for each range of integrations with a current token (see [`range_of`]), how
    /// many there are and the sum of their versions, as the database keeps them (triggers on
    /// `integrations` maintain them, so a change made by hand counts too): what the resync
    /// compares with the token index, which counts the same. Ranges with none are left out.
    /// Reads at most 256 rows, whatever the number of integrations.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn range_digests(&self) -> Result<Vec<RangeDigest>, Error> {
        let statement = Statement::from_string(
            self.db.get_database_backend(),
            "SELECT range_key, integrations, versions FROM integration_ranges \
             WHERE integrations <> 0",
        );
        let rows = self.db.query_all_raw(statement).await.map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let column = |name| row.try_get::<i64>("", name).map_err(db_error);
                let range: String = row.try_get("", "range_key").map_err(db_error)?;
                let range = u8::from_str_radix(&range, 16).map_err(|_| corrupt("range"))?;
                Ok(RangeDigest {
                    range,
                    integrations: column("integrations")?,
                    versions: column("versions")?,
                })
            })
            .collect()
    }

    /// Returns every integration of one range (see [`range_of`]), deleted ones included, with
    /// all its tokens, read in one snapshot: what the resync reloads when a range differs.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn load_range(&self, range: u8) -> Result<Vec<IntegrationTokens>, Error> {
        use entity::integration::Column;
        let in_range = ExprTrait::eq(range_expr(), format!("{range:02x}"));
        let snapshot = self.snapshot().await?;
        let integrations = entity::integration::Entity::find()
            .filter(in_range.clone())
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        let ids = Query::select()
            .column(Column::Id)
            .from(entity::integration::Entity)
            .and_where(in_range)
            .to_owned();
        let tokens = entity::token::Entity::find()
            .filter(entity::token::Column::IntegrationId.in_subquery(ids))
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        snapshot.commit().await.map_err(db_error)?;
        with_tokens(integrations, tokens)
    }
}
