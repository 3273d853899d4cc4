//! Decoding a row the same way from the Any driver's rows and from PostgreSQL's or
//! SQLite's own.

use sqlx::{ColumnIndex, Database, Decode, Row, Type};

/// What a row type must decode for the rows read here: 64-bit integers and text, each
/// possibly null, by column name. `AnyRow`, `PgRow` and `SqliteRow` all do.
pub trait Decodes<'r>: Row
where
    &'r str: ColumnIndex<Self>,
{
    fn int(&'r self, column: &'r str) -> Result<i64, sqlx::Error>;
    fn text(&'r self, column: &'r str) -> Result<String, sqlx::Error>;
    fn maybe_int(&'r self, column: &'r str) -> Result<Option<i64>, sqlx::Error>;
    fn maybe_text(&'r self, column: &'r str) -> Result<Option<String>, sqlx::Error>;
}

impl<'r, R> Decodes<'r> for R
where
    R: Row,
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    fn int(&'r self, column: &'r str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
    fn text(&'r self, column: &'r str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }
    fn maybe_int(&'r self, column: &'r str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
    fn maybe_text(&'r self, column: &'r str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
}
