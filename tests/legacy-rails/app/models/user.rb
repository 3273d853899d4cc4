# A member. Validations are declared in the order the errors object lists
# the fields: email, password, nickname, phone_number, profile_image_url.
class User < ApplicationRecord
  PHONE_NUMBER_FORMAT = /\A\+[1-9]\d{7,14}\z/
  HTTPS_URL_FORMAT = %r{\Ahttps://}

  PRIVATE_FIELDS = %w[id email nickname phone_number profile_image_url created_at updated_at].freeze
  PUBLIC_FIELDS = %w[id nickname profile_image_url created_at].freeze

  has_many :sessions, dependent: :delete_all

  scope :active, -> { where(deleted_at: nil) }

  before_validation :normalize_email

  validates :email, presence: true
  validates :email, format: { with: URI::MailTo::EMAIL_REGEXP },
                    uniqueness: { case_sensitive: false },
                    length: { maximum: 255 },
                    allow_blank: true

  # Presence (of the digest) and at most 72 characters.
  has_secure_password
  validates :password, length: { minimum: 8 }, allow_nil: true

  validates :nickname, presence: true
  validates :nickname, length: { in: 2..20 }, allow_blank: true

  validates :phone_number, format: { with: PHONE_NUMBER_FORMAT },
                           uniqueness: true,
                           allow_nil: true

  validates :profile_image_url, format: { with: HTTPS_URL_FORMAT, message: "must be an https URL" },
                                length: { maximum: 2048 },
                                allow_nil: true

  # Fields in a fixed order (as_json(only:) would follow the attribute set's
  # order, which changes after an update).
  def private_view
    slice(*PRIVATE_FIELDS).as_json
  end

  def public_view
    slice(*PUBLIC_FIELDS).as_json
  end

  # Withdrawal keeps the row and scrubs it.
  def withdraw!
    transaction do
      sessions.delete_all
      self.email = "deleted-#{id}@invalid"
      self.nickname = "(deleted)"
      self.phone_number = nil
      self.profile_image_url = nil
      # A digest of a random secret nobody knows: no password matches it.
      self.password = SecureRandom.hex(32)
      self.deleted_at = Time.current
      save!(validate: false)
    end
  end

  private

  def normalize_email
    self.email = email.strip.downcase if email.is_a?(String)
  end
end
