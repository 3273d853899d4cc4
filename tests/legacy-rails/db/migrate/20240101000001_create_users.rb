class CreateUsers < ActiveRecord::Migration[6.1]
  def change
    create_table :users do |t|
      t.string :email, null: false
      t.string :password_digest, null: false
      t.string :nickname, null: false
      t.string :phone_number
      t.string :profile_image_url
      t.datetime :deleted_at
      t.timestamps
    end
    add_index :users, :email, unique: true
    add_index :users, :phone_number, unique: true
    add_index :users, :updated_at
  end
end
