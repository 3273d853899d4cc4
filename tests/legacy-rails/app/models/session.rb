# A log-in: an access token (1 hour) and a refresh token (30 days).
class Session < ApplicationRecord
  ACCESS_TOKEN_TTL = 1.hour
  REFRESH_TOKEN_TTL = 30.days

  belongs_to :user

  has_secure_token :token
  has_secure_token :refresh_token

  scope :unexpired, -> { where("expires_at > ?", Time.current) }
  scope :refreshable, -> { where("refresh_expires_at > ?", Time.current) }

  before_validation on: :create do
    now = Time.current
    self.expires_at ||= now + ACCESS_TOKEN_TTL
    self.refresh_expires_at ||= now + REFRESH_TOKEN_TTL
  end

  def as_json(_options = nil)
    {
      "token" => token,
      "refresh_token" => refresh_token,
      "expires_at" => expires_at,
      "user" => user.private_view,
    }.as_json
  end
end
