# has_secure_password hashes with BCrypt::Engine.cost (12 by default), or with
# BCrypt::Engine::MIN_COST (4) when ActiveModel::SecurePassword.min_cost is set.
# Tests make sign-ups fast with BCRYPT_COST=4.
require "bcrypt"

cost = Integer(ENV.fetch("BCRYPT_COST", BCrypt::Engine::DEFAULT_COST.to_s), 10)
unless cost.between?(BCrypt::Engine::MIN_COST, BCrypt::Engine::MAX_COST)
  raise ArgumentError, "BCRYPT_COST must be between #{BCrypt::Engine::MIN_COST} and #{BCrypt::Engine::MAX_COST}"
end
BCrypt::Engine.cost = cost
ActiveModel::SecurePassword.min_cost = false
