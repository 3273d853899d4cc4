# Puma for the legacy oracle: one process, a few threads, bound to loopback.
max_threads = ENV.fetch("RAILS_MAX_THREADS", 3).to_i
min_threads = ENV.fetch("RAILS_MIN_THREADS", max_threads).to_i
threads min_threads, max_threads

environment ENV.fetch("RAILS_ENV", "production")
bind "tcp://#{ENV.fetch("BIND_HOST", "127.0.0.1")}:#{ENV.fetch("PORT", 3000)}"
workers 0
pidfile ENV.fetch("PIDFILE", File.expand_path("../tmp/pids/server.pid", __dir__))
