require "active_support/core_ext/integer/time"

Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false

  # No public/ directory: nothing to serve, and the exceptions app falls back to
  # empty bodies for HTML-ish requests.
  config.public_file_server.enabled = false

  # Logs go to stdout, warnings and errors only (start.sh can redirect them).
  config.log_level = :warn
  config.log_tags = [:request_id]
  logger = ActiveSupport::Logger.new($stdout)
  logger.formatter = ::Logger::Formatter.new
  config.logger = ActiveSupport::TaggedLogging.new(logger)

  config.active_support.deprecation = :silence

  # The schema lives in the migrations; never write db/schema.rb at runtime.
  config.active_record.dump_schema_after_migration = false
end
