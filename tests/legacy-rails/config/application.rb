require_relative "boot"

require "rails"
# Only the frameworks the member API uses: no ActionCable, ActiveStorage,
# ActionMailer, ActionMailbox, ActionText, ActiveJob, ActionView, Sprockets.
require "active_model/railtie"
require "active_record/railtie"
require "action_controller/railtie"

Bundler.require(*Rails.groups)

module LegacyMemberApi
  class Application < Rails::Application
    config.load_defaults 6.1

    # API-only application: the API middleware stack and ActionController::API.
    config.api_only = true

    # Times are UTC in the database and in JSON.
    config.time_zone = "UTC"
    config.active_record.default_timezone = :utc
  end
end
