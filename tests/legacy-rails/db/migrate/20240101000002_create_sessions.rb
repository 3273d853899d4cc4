class CreateSessions < ActiveRecord::Migration[6.1]
  def change
    create_table :sessions do |t|
      t.references :user, null: false, foreign_key: true
      t.string :token, null: false
      t.string :refresh_token, null: false
      t.datetime :expires_at, null: false
      t.datetime :refresh_expires_at, null: false
      t.timestamps
    end
    add_index :sessions, :token, unique: true
    add_index :sessions, :refresh_token, unique: true
  end
end
