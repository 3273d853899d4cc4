Rails.application.routes.draw do
  namespace :api do
    namespace :v1 do
      post   "users",             to: "users#create"
      get    "users",             to: "users#index"
      get    "users/me",          to: "users#me"
      patch  "users/me",          to: "users#update"
      delete "users/me",          to: "users#destroy"
      put    "users/me/password", to: "users#update_password"
      get    "users/:id",         to: "users#show", constraints: { id: /\d+/ }

      post   "sessions",          to: "sessions#create"
      post   "sessions/refresh",  to: "sessions#refresh"
      delete "sessions",          to: "sessions#destroy"
    end
  end
end
