module Api
  module V1
    class UsersController < ApplicationController
      before_action :authenticate!, only: %i[me update destroy update_password]

      # POST /api/v1/users
      def create
        user = User.new(create_params)
        if user.save
          render json: user.private_view, status: :created
        else
          render json: { errors: user.errors }, status: :unprocessable_entity
        end
      end

      # GET /api/v1/users?ids=1,2,3
      def index
        ids = params.require(:ids).split(",").first(100)
        users = User.active.where(id: ids).order(:id)
        render json: { users: users.map(&:public_view) }
      end

      # GET /api/v1/users/:id
      def show
        render json: User.active.find(params[:id]).public_view
      end

      # GET /api/v1/users/me
      def me
        render json: current_user.private_view
      end

      # PATCH /api/v1/users/me
      def update
        user = current_user
        if user.update(update_params)
          render json: user.private_view
        else
          render json: { errors: user.errors }, status: :unprocessable_entity
        end
      end

      # PUT /api/v1/users/me/password
      def update_password
        user = current_user
        attrs = params.permit(:current_password, :password)
        unless user.authenticate(attrs[:current_password].to_s)
          return render json: { errors: { current_password: ["is invalid"] } }, status: :unprocessable_entity
        end

        user.password = attrs[:password]
        if user.save
          user.sessions.where.not(id: current_session.id).delete_all
          head :no_content
        else
          render json: { errors: user.errors }, status: :unprocessable_entity
        end
      end

      # DELETE /api/v1/users/me
      def destroy
        current_user.withdraw!
        head :no_content
      end

      private

      def create_params
        params.require(:user).permit(:email, :password, :nickname, :phone_number, :profile_image_url)
      end

      def update_params
        params.require(:user).permit(:nickname, :phone_number, :profile_image_url)
      end
    end
  end
end
