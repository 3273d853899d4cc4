class ApplicationController < ActionController::API
  include ActionController::HttpAuthentication::Token::ControllerMethods

  rescue_from ActionController::ParameterMissing do |e|
    # The message without DidYouMean's "Did you mean?" suggestions.
    message = e.respond_to?(:original_message) ? e.original_message : e.message
    render json: { error: message }, status: :bad_request
  end

  rescue_from ActiveRecord::RecordNotFound do
    render json: { error: "Not Found" }, status: :not_found
  end

  private

  # The session of the bearer token, if it is a live access token.
  def current_session
    return @current_session if defined?(@current_session)

    @current_session = authenticate_with_http_token do |token, _options|
      ::Session.unexpired.find_by(token: token)
    end
  end

  def current_user
    current_session&.user
  end

  def authenticate!
    render json: { error: "Unauthorized" }, status: :unauthorized unless current_session
  end
end
