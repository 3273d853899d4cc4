//! A batch's keys as one query parameter.

/// The database a batch is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// The keys as a table `k` of one column, `k.value`, bound as the query's first
/// parameter: PostgreSQL unnests an array literal (`{1,2,3}`; text keys quoted, so that
/// a comma, a brace, a quote or the word `NULL` in a key is that key and nothing else),
/// SQLite walks a JSON array. Joined to the table read (`JOIN members m ON m.id =
/// k.value`), each key is one index look-up whatever the number of keys: with
/// `= ANY($1)` PostgreSQL's generic plan, made for ten keys, scanned small tables whole.
/// `cast` is the keys' SQL type: `bigint` keys must be numbers.
pub fn keys_table<K: ToString>(engine: Engine, cast: &str, keys: &[K]) -> (String, String) {
    let list: Vec<String> = keys.iter().map(ToString::to_string).collect();
    match engine {
        Engine::Postgres => {
            let elements: Vec<String> = if cast == "bigint" {
                list
            } else {
                list.iter().map(|k| array_element(k)).collect()
            };
            (
                format!("unnest(CAST($1 AS {cast}[])) AS k(value)"),
                format!("{{{}}}", elements.join(",")),
            )
        }
        Engine::Sqlite => (
            "json_each($1) AS k".to_owned(),
            serde_json::to_string(&list_values(cast, &list)).unwrap_or_default(),
        ),
    }
}

/// A text key as an element of PostgreSQL's array literal: double-quoted, its
/// backslashes and double quotes escaped.
fn array_element(key: &str) -> String {
    format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The keys as JSON values: numbers for a numeric column, strings otherwise.
fn list_values(cast: &str, list: &[String]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|k| match cast {
            "bigint" => k
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::from(k.as_str())),
            _ => serde_json::Value::from(k.as_str()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_parameter_on_each_engine() {
        let (table, param) = keys_table(Engine::Postgres, "bigint", &[3, 1, 2]);
        assert_eq!(table, "unnest(CAST($1 AS bigint[])) AS k(value)");
        assert_eq!(param, "{3,1,2}");
        let (table, param) = keys_table(Engine::Sqlite, "bigint", &[3, 1]);
        assert_eq!(table, "json_each($1) AS k");
        assert_eq!(param, "[3,1]");
        let (_, param) = keys_table(Engine::Sqlite, "text", &["a-b_c"]);
        assert_eq!(param, r#"["a-b_c"]"#);
        let (_, param) = keys_table(Engine::Postgres, "text", &["a-b_c", r#"x"y\z"#]);
        assert_eq!(param, r#"{"a-b_c","x\"y\\z"}"#);
    }
}
