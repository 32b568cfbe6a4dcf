pub mod access_log;
