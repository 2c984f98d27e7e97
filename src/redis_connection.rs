//! A connection to Redis shared by the features that keep state there (rate-limit counters,
//! cached answers): opened on first use, kept by redis's `ConnectionManager` (which reconnects
//! by itself once connected), and — after a failed first connection — not tried again for a
//! second, so that while Redis is down each request fails over at once instead of waiting.

use std::time::Duration;

/// How long to wait before trying to connect again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// One Redis server, connected on first use.
pub struct RedisConnection {
    client: Result<redis::Client, String>,
    connection: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    retry_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// How long a connection attempt or a command may take.
    pub timeout: Duration,
}

impl RedisConnection {
    /// The server at `url` (checked by config validation), with `timeout` per operation.
    pub fn new(url: &str, timeout: Duration) -> RedisConnection {
        RedisConnection {
            client: redis::Client::open(url).map_err(|e| e.to_string()),
            connection: tokio::sync::Mutex::new(None),
            retry_at: std::sync::Mutex::new(None),
            timeout,
        }
    }

    /// The connection, opened if there is none yet.
    pub async fn get(&self) -> Result<redis::aio::ConnectionManager, String> {
        let mut current = self.connection.lock().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let now = tokio::time::Instant::now();
        if let Ok(retry_at) = self.retry_at.lock()
            && retry_at.is_some_and(|at| now < at)
        {
            return Err("unreachable at the last attempt; retrying shortly".into());
        }
        let client = self.client.as_ref().map_err(Clone::clone)?.clone();
        // The manager reconnects by itself once connected; the first connection is ours to retry.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connected =
            match tokio::time::timeout(self.timeout, redis::aio::ConnectionManager::new_with_config(client, config))
                .await
            {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no connection within {:?}", self.timeout)),
            };
        match connected {
            Ok(connection) => {
                *current = Some(connection.clone());
                Ok(connection)
            }
            Err(reason) => {
                if let Ok(mut retry_at) = self.retry_at.lock() {
                    *retry_at = Some(now + RECONNECT_AFTER);
                }
                Err(reason)
            }
        }
    }

    /// Runs `command` on the connection within the timeout.
    pub async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, String> {
        let mut connection = self.get().await?;
        match tokio::time::timeout(self.timeout, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}
