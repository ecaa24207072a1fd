//! What a locker does with input it cannot use: a value of another type, a
//! key of another Redis type planted under its prefix, absurd arguments, a
//! server that is not there. Each is a clear error; none is a panic or a
//! silent success.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{
    Clock, Error, InspectableLocker, LeaseLocker, LockValue, Locker, MAX_KEY_LEN, MAX_TOKEN_LEN,
    MAX_VALUE_LEN, RenewableLocker, latest_expiry,
};
use hostlock_redis::RedisLocker;

use common::{Server, prefix};

fn open<T>(server: &Server, prefix: &str) -> RedisLocker<T> {
    RedisLocker::builder(&server.url())
        .prefix(prefix)
        .open()
        .expect("a locker on the test server")
}

fn is_invalid<R: std::fmt::Debug>(result: hostlock::Result<R>) -> bool {
    matches!(result, Err(Error::InvalidArgument { .. }))
}

/// A permanent error of the server named `addr`, whose message has `words`.
fn assert_backend<R: std::fmt::Debug>(result: hostlock::Result<R>, addr: &str, words: &[&str]) {
    let e = result.expect_err("an error");
    assert!(
        matches!(&e, Error::Backend { store, transient: false, .. } if store.contains(addr)),
        "{e:?}"
    );
    let message = e.to_string();
    for word in words {
        assert!(message.contains(word), "{message:?} lacks {word:?}");
    }
}

/// The error of a value that does not decode, naming the server, the key
/// and the type.
fn assert_value_type<R: std::fmt::Debug>(
    result: hostlock::Result<R>,
    addr: &str,
    key: &str,
    expected: &str,
) {
    let e = result.expect_err("an error");
    assert!(!e.is_transient());
    let Error::ValueType {
        path,
        key: named,
        expected: wanted,
        ..
    } = &e
    else {
        panic!("expected ValueType, got {e:?}");
    };
    assert!(path.to_string_lossy().contains(addr), "{e:?}");
    assert_eq!(named, key);
    assert!(wanted.contains(expected), "{e:?}");
    assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
}

#[test]
fn a_value_of_another_type_is_an_error_naming_key_and_type() {
    let server = Server::start();
    let prefix = prefix("types");
    let strings: RedisLocker<String> = open(&server, &prefix);
    let numbers: RedisLocker<u32> = open(&server, &prefix);
    assert!(
        strings
            .acquire("k", LockValue::new("text".to_owned()))
            .unwrap()
    );
    assert!(numbers.acquire("n", LockValue::new(7)).unwrap());
    let addr = server.addr();
    assert_value_type(numbers.get("k"), &addr, "k", "u32");
    assert_value_type(numbers.info("k"), &addr, "k", "u32");
    assert_value_type(strings.get("n"), &addr, "n", "String");
    // One such entry does not hide the others, and is in its place.
    let listed = numbers.list(false).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(matches!(listed[0], Err(Error::ValueType { .. })));
    assert_eq!(listed[1].as_ref().unwrap().value, 7);
    // What needs no decoding still works.
    assert!(numbers.exists("k").unwrap());
    assert!(numbers.release("k").unwrap());
}

#[test]
fn a_key_of_another_redis_type_under_the_prefix_is_reported_and_left_alone() {
    let server = Server::start();
    let prefix = prefix("planted");
    let locker: RedisLocker<String> = open(&server, &prefix);
    let addr = server.addr();
    let mut raw = server.raw();
    let set = |raw: &mut redis::Connection, cmd: &mut redis::Cmd| cmd.query::<()>(raw).unwrap();
    set(
        &mut raw,
        redis::cmd("SET").arg(format!("{prefix}lock:s")).arg("junk"),
    );
    set(
        &mut raw,
        redis::cmd("RPUSH").arg(format!("{prefix}lock:l")).arg("x"),
    );
    set(
        &mut raw,
        redis::cmd("HSET")
            .arg(format!("{prefix}lock:h"))
            .arg("foo")
            .arg("bar"),
    );
    set(
        &mut raw,
        redis::cmd("ZADD")
            .arg(format!("{prefix}locks"))
            .arg(0)
            .arg("s"),
    );
    let v = || LockValue::new("v".to_owned());

    assert_backend(
        locker.get("s"),
        &addr,
        &["lock:s", "string", "not a hostlock lock"],
    );
    assert_backend(locker.exists("l"), &addr, &["lock:l", "list"]);
    assert_backend(locker.get("h"), &addr, &["lock:h", "without the fields"]);
    assert_backend(locker.acquire("s", v()), &addr, &["lock:s", "string"]);
    assert_backend(locker.release("s"), &addr, &["lock:s"]);
    assert_backend(locker.force_release("l"), &addr, &["lock:l"]);
    assert_backend(
        locker.try_lock("s", "v".to_owned(), None),
        &addr,
        &["lock:s"],
    );
    let listed = locker.list(true).unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the indexed planted key is listed as its error"
    );
    assert!(listed[0].is_err());
    let junk: String = redis::cmd("GET")
        .arg(format!("{prefix}lock:s"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(junk, "junk", "another program's key is left alone");

    // A counter that is not a number stops grants, and nothing else.
    set(
        &mut raw,
        redis::cmd("SET").arg(format!("{prefix}fence")).arg("abc"),
    );
    let e = locker.acquire("k", v()).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Backend {
                transient: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(&addr), "{e}");
    assert!(!locker.exists("k").unwrap());
    set(&mut raw, redis::cmd("DEL").arg(format!("{prefix}fence")));
    assert!(locker.acquire("k", v()).unwrap());
}

#[test]
fn absurd_arguments_are_invalid() {
    let server = Server::start();
    let locker: RedisLocker<String> = open(&server, &prefix("args"));
    let v = || LockValue::new("v".to_owned());
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let long_token = "t".repeat(MAX_TOKEN_LEN + 1);
    assert!(is_invalid(locker.acquire("", v())));
    assert!(is_invalid(locker.get(&long_key)));
    assert!(is_invalid(locker.acquire("k", v().with_token(""))));
    assert!(is_invalid(
        locker.acquire("k", v().with_token(long_token.clone()))
    ));
    assert!(is_invalid(locker.touch("k", "", SystemTime::now())));
    assert!(is_invalid(locker.release_if_owner("k", &long_token)));
    let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
    let after_latest = latest_expiry() + Duration::from_nanos(1);
    assert!(is_invalid(
        locker.acquire("k", v().expiring_at(before_epoch))
    ));
    assert!(is_invalid(
        locker.acquire("k", v().expiring_at(after_latest))
    ));
    assert!(is_invalid(locker.touch("k", "t", after_latest)));
    assert!(is_invalid(locker.try_lock(
        "k",
        "v".to_owned(),
        Some(Duration::ZERO)
    )));
    let huge = LockValue::new("x".repeat(MAX_VALUE_LEN));
    assert!(is_invalid(locker.acquire("k", huge)));
    assert!(!locker.exists("k").unwrap(), "nothing was stored");

    // The limits themselves, and keys with bytes that mean something to Redis.
    let at_latest = v()
        .expiring_at(latest_expiry())
        .with_token("t".repeat(MAX_TOKEN_LEN));
    assert!(locker.acquire(&"k".repeat(MAX_KEY_LEN), at_latest).unwrap());
    for key in ["a:b", "*", "[x]?", "lock:k", "é\u{0}\n"] {
        assert!(locker.acquire(key, v()).unwrap(), "{key:?}");
        assert!(locker.exists(key).unwrap(), "{key:?}");
    }
    assert!(!locker.exists("k").unwrap(), "a glob is not a pattern here");

    let url = server.url();
    let build = || RedisLocker::<String>::builder(&url);
    assert!(is_invalid(RedisLocker::<String>::open("not a url")));
    assert!(is_invalid(build().prefix("").open()));
    assert!(is_invalid(build().session_timeout(Duration::ZERO).open()));
    assert!(is_invalid(
        build().session_timeout(Duration::from_millis(1)).open()
    ));
    assert!(is_invalid(build().connect_timeout(Duration::ZERO).open()));
    assert!(is_invalid(build().command_timeout(Duration::ZERO).open()));
}

#[test]
fn an_unreachable_server_is_a_transient_error_naming_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let e = RedisLocker::<String>::open(&format!("redis://{addr}")).unwrap_err();
    assert!(
        matches!(&e, Error::Backend { store, transient: true, .. } if *store == format!("redis {addr}")),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.contains(&addr), "{message}");
    assert!(message.contains("cannot connect"), "{message}");
}

/// A clock that panics, as a broken one might.
struct Broken;

impl Clock for Broken {
    fn now(&self) -> SystemTime {
        panic!("the clock is broken")
    }
}

#[test]
fn a_panicking_clock_is_an_error_and_changes_nothing() {
    let server = Server::start();
    let prefix = prefix("clock");
    let broken: RedisLocker<String> = RedisLocker::builder(&server.url())
        .prefix(prefix.as_str())
        .clock(Broken)
        .open()
        .unwrap();
    let e = broken
        .acquire("k", LockValue::new("v".to_owned()))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Panicked { detail } if detail.contains("broken")),
        "{e:?}"
    );
    let fine: RedisLocker<String> = open(&server, &prefix);
    assert!(!fine.exists("k").unwrap());
}
