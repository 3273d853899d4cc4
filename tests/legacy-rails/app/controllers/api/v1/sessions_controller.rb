module Api
  module V1
    class SessionsController < ApplicationController
      # POST /api/v1/sessions
      def create
        credentials = params.permit(:email, :password)
        user = User.active.find_by(email: credentials[:email].to_s.strip.downcase)
        if user&.authenticate(credentials[:password].to_s)
          render json: user.sessions.create!, status: :created
        else
          render json: { error: "Invalid email or password" }, status: :unauthorized
        end
      end

      # POST /api/v1/sessions/refresh
      def refresh
        old = ::Session.refreshable.find_by(refresh_token: params.permit(:refresh_token)[:refresh_token].to_s)
        fresh = nil
        if old
          ::Session.transaction do
            # Rotation: the old pair is destroyed; only one refresh may win it.
            raise ActiveRecord::Rollback unless ::Session.where(id: old.id).delete_all == 1

            fresh = old.user.sessions.create!
          end
        end

        if fresh
          render json: fresh, status: :created
        else
          render json: { error: "Invalid refresh token" }, status: :unauthorized
        end
      end

      # DELETE /api/v1/sessions
      def destroy
        authenticate_with_http_token do |token, _options|
          ::Session.where(token: token).delete_all
        end
        head :no_content
      end
    end
  end
end
