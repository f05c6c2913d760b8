use super::*;

const EXAMPLES: [&str; 4] = ["ALTER SYSTEM", "COPY ... PROGRAM", "DROP DATABASE", "LOAD"];

fn deny() -> StatementRules {
    StatementRules::new(&EXAMPLES, &[] as &[&str]).expect("valid entries")
}

fn allow(entries: &[&str]) -> StatementRules {
    StatementRules::new(&[] as &[&str], entries).expect("valid entries")
}

fn denied_by(rules: &StatementRules, sql: &str) -> Option<String> {
    match rules.check(sql) {
        Ok(()) => None,
        Err(Refusal {
            reason: RefusalReason::Denied { entry },
            ..
        }) => Some(entry),
        Err(other) => panic!("unexpected refusal {other:?} for {sql:?}"),
    }
}

#[test]
fn hidden_keywords_do_not_match() {
    let r = deny();
    for sql in [
        "SELECT 'ALTER SYSTEM'",
        "SELECT $$DROP DATABASE x$$",
        "SELECT $tag$ ; DROP DATABASE x; $tag$",
        "/* ALTER SYSTEM */ SELECT 1",
        "/* /* nested */ ALTER SYSTEM */ SELECT 1",
        "SELECT 1 -- ; ALTER SYSTEM SET x = 1",
        "SELECT \"ALTER\", \"; LOAD\"",
        "SELECT 'it''s ; LOAD x'",
        "SELECT E'\\' ; LOAD x'",
        "SELECT 'a'\n'; LOAD x'",
        "",
        " ; ;; -- nothing\n",
        "SELECT load FROM t",
        "ALTER TABLE system ADD COLUMN x int",
        "DROP TABLE database",
        "COPY t FROM STDIN",
        "COPY (SELECT 'PROGRAM') TO STDOUT",
        "SELECT 1; ALTER /* */ TABLE t SET (fillfactor = 50)",
        "EXPLAIN SELECT 'LOAD'",
    ] {
        assert_eq!(denied_by(&r, sql), None, "{sql:?}");
    }
}

#[test]
fn denied_statements_match() {
    let r = deny();
    for (sql, entry) in [
        ("  alter   system set work_mem = '1MB'", "ALTER SYSTEM"),
        ("/* c */ ALTER/* c */SYSTEM RESET ALL", "ALTER SYSTEM"),
        ("-- c\nalter\n\tSystem reset all;", "ALTER SYSTEM"),
        ("SELECT 1; ALTER SYSTEM SET x=1", "ALTER SYSTEM"),
        ("SELECT ';'; ALTER SYSTEM SET x=1", "ALTER SYSTEM"),
        ("copy t from program 'id'", "COPY ... PROGRAM"),
        ("COPY t TO PROGRAM 'x'", "COPY ... PROGRAM"),
        (
            "COPY t (a, b) FROM PROGRAM 'x' WITH (FORMAT csv)",
            "COPY ... PROGRAM",
        ),
        ("drop database foo", "DROP DATABASE"),
        ("DROP DATABASE IF EXISTS foo WITH (FORCE)", "DROP DATABASE"),
        ("LOAD 'x'", "LOAD"),
        ("load 'auto_explain'", "LOAD"),
        // The escaped quote must not end the string early.
        ("SELECT E'\\''; ALTER SYSTEM SET x = 1", "ALTER SYSTEM"),
        ("SELECT E'\\'' ; ALTER SYSTEM SET x = 1", "ALTER SYSTEM"),
        ("SELECT 'a'''; LOAD 'x'", "LOAD"),
        ("SELECT $$x$$; LOAD 'x'", "LOAD"),
        ("SELECT $a$ $b$ $a$; LOAD 'x'", "LOAD"),
        ("SELECT /* ; */ 1; /* */ LOAD 'x'", "LOAD"),
        ("(((LOAD 'x')))", "LOAD"),
        // `$` belongs to the identifier `a$$` (as in the server), so no dollar quote.
        ("SELECT a$$; LOAD 'x'; $$", "LOAD"),
        // A standard string: the backslash is ordinary, so the string ends there.
        ("SELECT 'a\\'; LOAD 'x'; --'", "LOAD"),
    ] {
        assert_eq!(denied_by(&r, sql).as_deref(), Some(entry), "{sql:?}");
    }
}

#[test]
fn refusal_message() {
    let err = deny()
        .check("select 1; alter system set work_mem = '1MB'")
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "statement refused by the pooler's deny_statements: \"ALTER SYSTEM\""
    );
    assert_eq!(err.statement, "ALTER SYSTEM SET WORK_MEM");
    assert_eq!(Refusal::SQLSTATE, "42501");
    let err = allow(&["SELECT"])
        .check("delete from t")
        .expect_err("refused");
    assert_eq!(err.reason, RefusalReason::NotAllowed);
    assert_eq!(
        err.to_string(),
        "statement refused by the pooler's allow_statements: \"DELETE FROM T\" is not allowed"
    );
}

#[test]
fn gaps_and_consecutive_keywords() {
    let r = StatementRules::new(
        &["alter ... owner to", "GRANT ... TO ... WITH GRANT OPTION"],
        &[] as &[&str],
    )
    .expect("valid");
    assert!(r.check("ALTER TABLE t OWNER TO bob").is_err());
    assert!(r.check("ALTER TABLE t OWNER  /* x */ to bob").is_err());
    assert!(r.check("ALTER TABLE t OWNER bob TO x").is_ok());
    assert!(r.check("ALTER TABLE t RENAME TO owner").is_ok());
    assert!(r.check("GRANT x TO y WITH GRANT OPTION").is_err());
    assert!(r.check("GRANT x TO y").is_ok());
    // A gap does not cross into the next statement.
    assert!(r
        .check("ALTER TABLE t RENAME TO x; SELECT owner to")
        .is_ok());
    let entries: Vec<&str> = r.deny_entries().collect();
    assert_eq!(
        entries,
        vec!["ALTER ... OWNER TO", "GRANT ... TO ... WITH GRANT OPTION"]
    );
}

#[test]
fn unterminated_text() {
    let r = deny();
    // Inside the unterminated quote or comment, nothing matches...
    for sql in [
        "SELECT 'abc; ALTER SYSTEM SET x = 1",
        "SELECT E'abc\\'; LOAD 'x'",
        "SELECT $$abc; LOAD 'x'",
        "SELECT \"abc; LOAD 'x'",
        "SELECT 1 /* ; LOAD 'x'",
        "SELECT 1 /* /* */ ; LOAD 'x'",
    ] {
        assert_eq!(denied_by(&r, sql), None, "{sql:?}");
    }
    // ...but the statement's own first keywords still count.
    assert!(denied_by(&r, "LOAD 'abc").is_some());
    assert!(denied_by(&r, "ALTER SYSTEM SET x = 'abc").is_some());
    assert!(denied_by(&r, "COPY t FROM PROGRAM $$abc").is_some());
    assert!(denied_by(&r, "COPY t FROM '/* ; PROGRAM").is_none());
}

#[test]
fn standard_conforming_strings_off() {
    let r = deny();
    let off = LexOptions {
        standard_conforming_strings: false,
    };
    // With the setting off, `\'` escapes the quote, and the LOAD is real.
    let sql = "SELECT 'a\\''; LOAD 'x'; --'";
    assert!(r.check(sql).is_ok());
    assert!(r.check_with(sql, off).is_err());
    // B'' strings never have backslash escapes.
    assert!(r.check_with("SELECT B'1\\'; LOAD 'x'", off).is_err());
}

#[test]
fn allow_mode() {
    let r = allow(&[
        "SELECT", "INSERT", "SET", "SHOW", "BEGIN", "COMMIT", "EXPLAIN",
    ]);
    for sql in [
        "select 1",
        "SELECT 1; insert into t values (1); ;",
        "",
        " ; -- empty\n",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a) SELECT * FROM a",
        "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
        "EXPLAIN SELECT 1",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "SELECT 'DELETE FROM t'",
    ] {
        assert_eq!(r.check(sql), Ok(()), "{sql:?}");
    }
    for sql in [
        "DELETE FROM t",
        "SELECT 1; DELETE FROM t",
        "/* SELECT */ UPDATE t SET a = 1",
        "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
        "WITH a AS (SELECT 1) DELETE FROM t",
        "WITH a AS (SELECT 1), b AS MATERIALIZED (UPDATE t SET x = 1 RETURNING 1) SELECT 1",
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN (ANALYZE) UPDATE t SET a = 1",
        "WITH broken",
        "'SELECT'",
    ] {
        assert_eq!(
            r.check(sql).map_err(|e| e.reason),
            Err(RefusalReason::NotAllowed),
            "{sql:?}"
        );
    }
    // Multi-keyword allow entries.
    let r = allow(&["SELECT", "SET LOCAL"]);
    assert!(r.check("set local work_mem = '1MB'").is_ok());
    assert!(r.check("SET work_mem = '1MB'").is_err());
}

#[test]
fn deny_looks_through_with_and_explain() {
    let r = StatementRules::new(&["DELETE", "TRUNCATE", "WITH RECURSIVE"], &[] as &[&str])
        .expect("valid");
    for sql in [
        "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
        "WITH a AS NOT MATERIALIZED (SELECT 1) DELETE FROM t",
        "WITH a(x) AS (SELECT 1), b AS ((DELETE FROM t RETURNING 1)) SELECT 1",
        "WITH a AS (WITH b AS (DELETE FROM t RETURNING 1) SELECT 1) SELECT 1",
        "WITH \"update\" AS (SELECT 1) DELETE FROM t",
        "WITH update AS (SELECT 1) (DELETE FROM t)",
        "with recursive a(n) as (select 1) select 1",
        "EXPLAIN ANALYZE DELETE FROM t",
        "explain analyse verbose delete from t",
        "EXPLAIN (ANALYZE true, FORMAT json) DELETE FROM t",
        "EXPLAIN ANALYZE WITH a AS (SELECT 1) DELETE FROM t",
    ] {
        assert!(r.check(sql).is_err(), "{sql:?}");
    }
    // SEARCH/CYCLE clauses, with columns named like keywords.
    let search = "WITH RECURSIVE t(n, set) AS (SELECT 1, 1 UNION ALL SELECT n + 1, 1 FROM t) \
                  SEARCH DEPTH FIRST BY set SET ord DELETE FROM x";
    let r2 = StatementRules::new(&["DELETE"], &[] as &[&str]).expect("valid");
    assert!(r2.check(search).is_err());
    assert!(r2
        .check(&search.replace("DELETE FROM x", "SELECT 1"))
        .is_ok());
    let cycle = "WITH RECURSIVE t(n) AS (SELECT 1) CYCLE n SET is_cycle TO 'Y' DEFAULT 'N' \
                 USING path DELETE FROM x";
    assert!(r2.check(cycle).is_err());
    assert!(r2
        .check("WITH RECURSIVE t(n) AS (SELECT 1) CYCLE n SET c USING p SELECT 1")
        .is_ok());
    assert!(r2
        .check("WITH a AS (SELECT 1) SELECT 'DELETE' FROM a")
        .is_ok());
    assert!(r2
        .check("WITH a AS (SELECT 1) SELECT * FROM a WHERE x IN (SELECT 1)")
        .is_ok());
}

#[test]
fn begin_atomic_bodies() {
    let body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC \
                SELECT CASE WHEN true THEN 1 END; INSERT INTO t VALUES (1); END";
    let r = allow(&["CREATE", "SELECT", "INSERT"]);
    assert!(r.check(body).is_ok());
    assert!(r.check(&format!("{body}; SELECT 1")).is_ok());
    assert!(r.check(&format!("{body}; DELETE FROM t")).is_err());
    // A body statement that is not allowed.
    assert!(r
        .check(&body.replace("INSERT INTO", "DELETE FROM"))
        .is_err());
    // A trick to make the splitter think the body goes on: the statements after it are
    // still checked.
    let r = deny();
    let tricky = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC \
                  SELECT 1 AS case; END; ALTER SYSTEM SET x = 1";
    assert!(r.check(tricky).is_err());
    let tricky = "CREATE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1; LOAD 'x'";
    assert!(r.check(tricky).is_err());
}

#[test]
fn nesting_limit() {
    let r = deny();
    let mut sql = String::from("SELECT 1");
    for _ in 0..40 {
        sql = format!("WITH a AS ({sql}) SELECT 1");
    }
    assert_eq!(
        r.check(&sql).map_err(|e| e.reason),
        Err(RefusalReason::TooDeep)
    );
    // Leading parentheses are a loop, not nesting.
    let sql = format!("{}LOAD 'x'", "(".repeat(1000));
    assert!(denied_by(&r, &sql).is_some());
}

#[test]
fn invalid_entries() {
    let err = |deny: &[&str], allow: &[&str]| {
        StatementRules::new(deny, allow).expect_err("invalid entry")
    };
    let e = err(&["LOAD", ""], &[]);
    assert_eq!((e.list, e.index), (ListKind::Deny, 1));
    assert!(e.reason.contains("empty"), "{e}");
    let e = err(&["  "], &[]);
    assert!(e.reason.contains("empty"), "{e}");
    let e = err(&[], &["SELECT", "..."]);
    assert_eq!((e.list, e.index), (ListKind::Allow, 1));
    assert!(e.reason.contains("only `...`"), "{e}");
    assert!(err(&["... ..."], &[]).reason.contains("only `...`"));
    assert!(err(&["... PROGRAM"], &[]).reason.contains("must start"));
    let e = err(&["COPY...PROGRAM"], &[]);
    assert!(e.reason.contains("not a keyword"), "{e}");
    assert_eq!(
        e.to_string(),
        format!("deny_statements[0] \"COPY...PROGRAM\": {}", e.reason)
    );
    assert!(err(&["ALTER SYSTEM;"], &[])
        .reason
        .contains("not a keyword"));
    assert!(err(&["'LOAD'"], &[]).reason.contains("not a keyword"));
    // Normalization: case, spaces, doubled and trailing `...`.
    let r = StatementRules::new(&["  copy ...  ... program ... "], &["select"]).expect("valid");
    assert_eq!(
        r.deny_entries().collect::<Vec<_>>(),
        vec!["COPY ... PROGRAM"]
    );
    assert_eq!(r.allow_entries().collect::<Vec<_>>(), vec!["SELECT"]);
    assert!(!r.is_empty());
    assert!(StatementRules::default().is_empty());
    assert!(StatementRules::default().check("LOAD 'x'").is_ok());
}

#[test]
fn non_ascii_text() {
    let r = deny();
    assert!(denied_by(&r, "SELECT 'é', \"ü\", E'\\é'; LOAD 'x'").is_some());
    // Non-ASCII bytes are identifier characters, so `$$` continues the identifier.
    assert!(denied_by(&r, "SELECT é$$; LOAD 'x'").is_some());
    assert!(denied_by(&r, "SELECT $é$ ; LOAD 'x' $é$").is_none());
    assert!(r.check("SELECT '日本語 ; LOAD").is_ok());
}
